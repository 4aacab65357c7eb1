"""`python -m vit_hf.convert`: the timm -> vit_hf conversion CLI (it lives in `vit_hf.timm.convert`)."""

import sys

from .timm.convert import main

if __name__ == "__main__":
    sys.exit(main())
