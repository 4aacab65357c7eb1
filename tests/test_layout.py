"""The package's layers: imports point down only, and the model files import nothing but each other (they are
copied into saved folders and must load there without vit_hf)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vit_hf"
MODEL_FILES = {
    "configuration_vit_hf",
    "modeling_vit_hf",
    "layers_vit_hf",
    "resnetv2_vit_hf",
    "resnet_d_vit_hf",
    "image_processing_vit_hf",
}
# What each part may import from vit_hf (besides itself). The model files are "model".
ALLOWED = {
    "model": {"model"},
    "files": set(),
    "data": set(),
    "hub": {"files"},
    "timm": {"model", "hub", "files"},
    "visualize": {"model", "timm", "files"},
    "training": {"model", "files", "data", "hub", "timm", "visualize"},
}


def part_of(module: str) -> str:
    """`vit_hf.data.loading` -> "data"; `vit_hf.modeling_vit_hf` -> "model"."""
    first = module.split(".")[1] if "." in module else ""
    return "model" if first in MODEL_FILES else first


def vit_hf_imports(path: Path) -> set[str]:
    """Absolute names of the vit_hf modules that `path` imports (relative imports resolved)."""
    module = "vit_hf." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module and node.module.startswith("vit_hf"):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("vit_hf"))
    return names


def test_imports_point_down_only():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("__init__.py", "convert.py", "__main__.py"):
            continue  # the public surface and the CLI alias import from every part
        part = part_of("vit_hf." + ".".join(relative.with_suffix("").parts))
        for name in vit_hf_imports(path):
            target = part_of(name)
            if target != part and target not in ALLOWED[part]:
                wrong.append(f"{relative} ({part}) imports {name} ({target})")
    assert not wrong, "imports pointing up or sideways:\n" + "\n".join(wrong)


def test_model_files_use_only_flat_relative_imports():
    """transformers copies `from .x import y` dependencies next to the model file; anything else breaks loading
    with trust_remote_code=True."""
    for name in MODEL_FILES:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in MODEL_FILES, (
                    f"{name}.py: from {'.' * node.level}{node.module}"
                )
            if isinstance(node, ast.ImportFrom | ast.Import):
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(m.split(".")[0] in ("vit_hf", "timm") for m in modules), f"{name}.py imports {modules}"


def test_every_package_folder_is_in_the_readme_map():
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme[readme.index("## How the code is organised") :]
    for folder in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")):
        assert f"`vit_hf/{folder.name}/`" in section, f"vit_hf/{folder.name}/ is missing from the README's map"
    for module in sorted(PACKAGE.glob("*.py")):
        if module.stem not in ("__init__", "convert"):
            assert module.name in section or f"vit_hf/{module.name}" in section, module.name


def test_every_subpackage_is_packaged():
    """A non-editable install ships only the packages pyproject.toml names: every folder of vit_hf must be one."""
    import pytest
    from setuptools import find_packages

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packaged = set(find_packages(where=PACKAGE.parent, include=include))
    folders = {".".join(path.parent.relative_to(PACKAGE.parent).parts) for path in PACKAGE.rglob("__init__.py")}
    assert folders <= packaged, f"not packaged: {sorted(folders - packaged)}"
