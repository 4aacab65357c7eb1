"""Pictures of what a ViT learned: attention rollout and per-head maps, attention distance, position-embedding
similarity, patch-filter components, confident mistakes, and the CLI."""

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.conftest import tiny_config
from vit_hf import ViTHFForImageClassification
from vit_hf.visualize import (
    attention_rollout,
    attention_weights,
    last_layer_attention,
    mean_attention_distance,
    most_confident_mistakes,
    patch_filter_components,
    plot_mistakes,
    position_embedding_similarity,
    write_pictures,
)

VARIANTS = {
    "plain": dict(),
    "hybrid": dict(backbone_depths=[], backbone_stem_channels=32, patch_size=2),  # stem (1/4) then 2x2 patches
    "registers_mean_pooling": dict(num_register_tokens=3, pooling="mean"),
    "no_class_token": dict(class_token=False, pooling="mean"),
    "post_norm_no_embed_class": dict(norm_placement="post", no_embed_class=True, num_register_tokens=1),
    "distilled": dict(distillation_token=True),
    "rope_parallel": dict(rope_type="axial", use_pos_embed=False, norm_placement="parallel", pooling="mean"),
}


def model_for(variant: str, **overrides) -> ViTHFForImageClassification:
    torch.manual_seed(0)
    return ViTHFForImageClassification(tiny_config(**VARIANTS[variant], **overrides))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [(32, 32), (32, 48)])  # the model's size, and a non-square one off its grid
def test_rollout_and_head_maps_are_distributions_on_the_token_grid(variant, size):
    model = model_for(variant)
    pixels = torch.randn(3, 3, *size)
    output = attention_weights(model, pixels)
    grid = model.config.grid_size(size)
    rollout, heads = attention_rollout(output), last_layer_attention(output)
    assert output.grid == grid
    assert rollout.shape == (3, *grid)
    assert heads.shape == (3, model.config.num_attention_heads, *grid)
    torch.testing.assert_close(rollout.sum(dim=(-2, -1)), torch.ones(3))
    torch.testing.assert_close(heads.sum(dim=(-2, -1)), torch.ones(3, model.config.num_attention_heads))
    assert (rollout >= 0).all() and (heads >= 0).all()


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("training", [True, False])
def test_the_model_keeps_its_attention_implementation_and_mode(implementation, training):
    model = model_for("plain")
    model.set_attn_implementation(implementation)
    model.train(training)
    attention_weights(model, torch.randn(1, 3, 32, 32))
    assert model.config._attn_implementation == implementation
    assert model.vit.config._attn_implementation == implementation
    assert model.training is training
    with pytest.raises(ValueError, match="channels"):  # an error half-way restores it too
        attention_weights(model, torch.randn(1, 1, 32, 32))
    assert model.config._attn_implementation == implementation
    assert model.training is training


def test_attention_weights_do_not_depend_on_dropout():
    model = model_for("plain", attention_probs_dropout_prob=0.5).train()
    pixels = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(attention_weights(model, pixels).attentions, attention_weights(model, pixels).attentions)


@torch.no_grad()
def force_attention_onto(model: ViTHFForImageClassification, patch: int) -> None:
    """Every query attends (almost) only to token `patch`: tokens are their position embeddings alone, only that
    patch's embedding is non-zero, keys read it and every query matches it; attention and MLP outputs are zeroed,
    so every block sees the same tokens."""
    vit, width = model.vit, model.config.hidden_size
    for parameter in vit.parameters():
        parameter.zero_()
    for module in vit.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.weight.fill_(1.0)
    vit.pos_embed[0, model.config.num_prefix_tokens + patch, 0] = 1.0
    for block in vit.blocks:
        block.attn.qkv.weight[width : 2 * width, 0] = 1.0  # keys: the normalised token's first channel
        block.attn.qkv.bias[:width] = 1.0  # queries: all ones


@pytest.mark.parametrize("variant", ["plain", "registers_mean_pooling"])
def test_attention_forced_onto_one_patch_peaks_there(variant):
    model = model_for(variant)
    rows, cols = model.config.grid_size()
    target = (rows - 2) * cols + 1  # off the diagonal and away from the first token
    force_attention_onto(model, target)
    output = attention_weights(model, torch.randn(2, 3, 32, 32))
    rollout, heads = attention_rollout(output).flatten(-2), last_layer_attention(output).flatten(-2)
    assert (rollout.argmax(dim=-1) == target).all()
    assert (heads.argmax(dim=-1) == target).all()
    assert (heads[..., target] > 0.99).all()
    assert (rollout[..., target] > 0.5).all()  # the rest: what the residual keeps on each patch query


def test_position_embedding_similarity_equals_direct_cosine_similarity():
    model = model_for("registers_mean_pooling", image_size=[16, 24])  # 4 x 6 grid, 4 prefix tokens
    torch.manual_seed(1)
    model.vit.pos_embed.data.normal_()
    rows, cols = model.config.grid_size()
    patches = model.vit.pos_embed[0, model.config.num_prefix_tokens :].detach()
    similarity = position_embedding_similarity(model)
    assert similarity.shape == (rows, cols, rows, cols)
    for i in range(rows * cols):
        for j in range(rows * cols):
            expected = F.cosine_similarity(patches[i], patches[j], dim=0)
            torch.testing.assert_close(similarity[i // cols, i % cols, j // cols, j % cols], expected)


def test_position_embeddings_of_a_hybrid_live_on_its_feature_grid():
    model = model_for("hybrid")  # 32 px, stem stride 4, 2 px patches: a 4 x 4 grid
    assert position_embedding_similarity(model).shape == (4, 4, 4, 4)


def test_a_model_without_position_embeddings_is_named():
    with pytest.raises(ValueError, match="no position embeddings"):
        position_embedding_similarity(model_for("plain", use_pos_embed=False))


@torch.no_grad()
def uniform_attention(model: ViTHFForImageClassification) -> ViTHFForImageClassification:
    """Zero queries and keys: every score is equal, so every token attends evenly to all tokens."""
    width = model.config.hidden_size
    for block in model.vit.blocks:
        block.attn.qkv.weight[: 2 * width] = 0.0
        block.attn.qkv.bias[: 2 * width] = 0.0
    return model


@pytest.mark.parametrize(
    "image_size, expected",
    [
        ([4, 20], 4 * (5**2 - 1) / (3 * 5)),  # a row of 5 tokens 4 px apart: E|i - j| = (n^2 - 1) / 3n
        ([8, 8], 4 * (0 + 1 + 1 + math.sqrt(2)) / 4),  # 2 x 2 tokens: 0, 1, 1 and sqrt(2) strides from each
    ],
)
def test_uniform_attention_gives_the_analytic_mean_distance(image_size, expected):
    model = uniform_attention(model_for("plain", image_size=image_size, num_hidden_layers=3))
    distances = mean_attention_distance(model, torch.randn(5, 3, *image_size), batch_size=2)
    assert distances.shape == (3, model.config.num_attention_heads)
    torch.testing.assert_close(distances, torch.full_like(distances, expected))


def test_attention_distance_is_in_pixels_of_the_input():
    """The same uniform model as a hybrid: tokens are 8 px apart (stem 4 x patch 2), twice the plain 4 px."""
    model = uniform_attention(model_for("hybrid", image_size=[8, 40]))  # a row of 5 tokens
    distances = mean_attention_distance(model, torch.randn(2, 3, 8, 40))
    torch.testing.assert_close(distances, torch.full_like(distances, 8 * (5**2 - 1) / (3 * 5)))


@torch.no_grad()
def test_first_patch_filter_component_is_the_filters_main_direction():
    model = model_for("plain")
    weight = model.vit.patch_embed.proj.weight  # (32, 3, 4, 4)
    direction = torch.randn(weight[0].shape)
    direction /= direction.norm()
    scales = torch.linspace(-3, 3, weight.shape[0]).view(-1, 1, 1, 1)
    weight.copy_(scales * direction + 0.01 * torch.randn(weight.shape) + 5.0)  # plus an offset PCA must remove
    components = patch_filter_components(model, count=4)
    assert components.shape == (4, 3, 4, 4)
    assert abs(torch.dot(components[0].flatten(), direction.flatten())) > 0.99


def test_patch_filters_of_a_hybrid_are_refused():
    with pytest.raises(ValueError, match="hybrid"):
        patch_filter_components(model_for("hybrid"))


def test_most_confident_mistakes_come_first_and_only_mistakes(tmp_path):
    model = model_for("plain").eval()
    torch.nn.init.normal_(model.head.weight)  # a head that is not zero, so confidences differ
    pixels = torch.randn(10, 3, 32, 32)
    with torch.no_grad():
        probabilities = model(pixels).logits.softmax(-1)
    confidence, predictions = probabilities.max(-1)
    labels = predictions.clone()
    wrong = [0, 3, 4, 8, 9]
    labels[wrong] = (predictions[wrong] + 1) % model.config.num_labels
    batches = [{"pixel_values": pixels[:4], "labels": labels[:4]}, {"pixel_values": pixels[4:], "labels": labels[4:]}]
    mistakes = most_confident_mistakes(model, batches, count=3)
    expected = sorted(wrong, key=lambda index: -confidence[index].item())[:3]
    assert [mistake.index for mistake in mistakes] == expected
    assert [mistake.label for mistake in mistakes] == labels[expected].tolist()
    assert [mistake.prediction for mistake in mistakes] == predictions[expected].tolist()
    torch.testing.assert_close(mistakes[0].pixel_values, pixels[expected[0]])
    plot_mistakes(mistakes, model.config.id2label, [0.5] * 3, [0.5] * 3, tmp_path / "mistakes.png")
    assert min(png_size(tmp_path / "mistakes.png")) > 100
    with pytest.raises(ValueError, match="no mistakes"):
        plot_mistakes([], model.config.id2label, [0.5] * 3, [0.5] * 3, tmp_path / "none.png")


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("plain", ["attention_maps.png", "attention_distance.png", "position_embeddings.png", "patch_filters.png"]),
        ("hybrid", ["attention_maps.png", "attention_distance.png", "position_embeddings.png"]),  # filters see features
        (
            "rope_parallel",
            ["attention_maps.png", "attention_distance.png", "patch_filters.png"],
        ),  # no learned positions
    ],
)
def test_write_pictures_writes_the_pngs(variant, expected, tmp_path):
    model = model_for(variant)
    written = write_pictures(
        model, torch.randn(2, 3, 32, 32), tmp_path, [0.5] * 3, [0.5] * 3, labels=[0, 1], patch_filters=True
    )
    assert written == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(expected)  # no temporary left behind
    for name in written:
        assert min(png_size(tmp_path / name)) > 100


# --- the command line ------------------------------------------------------------------------------------------


def image_files(folder, count: int = 2) -> list[str]:
    paths = []
    generator = torch.Generator().manual_seed(0)
    for index in range(count):
        pixels = torch.randint(0, 256, (40 + 8 * index, 48, 3), dtype=torch.uint8, generator=generator)
        path = folder / f"image{index}.png"
        Image.fromarray(pixels.numpy()).save(path)
        paths.append(str(path))
    return paths


def test_cli_on_a_saved_folder(tmp_path):
    from vit_hf.image_processing_vit_hf import make_image_processor
    from vit_hf.visualize.__main__ import main

    model = model_for("hybrid", id2label={index: f"class {index}" for index in range(5)})
    model.save_pretrained(tmp_path / "model")
    make_image_processor(32).save_pretrained(tmp_path / "model")
    assert main([str(tmp_path / "model"), *image_files(tmp_path), "--out", str(tmp_path / "pictures")]) == 0
    written = sorted(path.name for path in (tmp_path / "pictures").iterdir())
    assert written == ["attention_distance.png", "attention_maps.png", "position_embeddings.png"]


def test_cli_on_a_timm_model_built_offline(tmp_path):
    from safetensors.torch import save_file

    from tests.timm_helpers import random_timm_model
    from vit_hf.visualize.__main__ import main

    checkpoint = tmp_path / "vit_tiny.safetensors"
    save_file(random_timm_model("vit_tiny_patch16_224", num_classes=3).state_dict(), checkpoint)
    args = ["vit_tiny_patch16_224", *image_files(tmp_path, 1), "--out", str(tmp_path / "out")]
    assert main([*args, "--checkpoint", str(checkpoint)]) == 0
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == ["attention_distance.png", "attention_maps.png", "patch_filters.png", "position_embeddings.png"]


def test_cli_names_a_model_that_is_not_vit_hf(tmp_path, caplog):
    from transformers import ViTConfig

    from vit_hf.visualize.__main__ import main

    ViTConfig().save_pretrained(tmp_path / "vit")
    assert main([str(tmp_path / "vit"), *image_files(tmp_path, 1), "--out", str(tmp_path / "out")]) == 2
    assert "'vit' model" in caplog.text


def test_mosaic_puts_tile_i_at_row_i_over_cols_column_i_mod_cols():
    from vit_hf.visualize.figures import mosaic

    tiles = torch.arange(5.0).view(5, 1, 1).expand(5, 2, 3)  # tile i is filled with i
    image = mosaic(tiles, cols=2, fill=-1.0)
    assert image.shape == (3 * 3 - 1, 2 * 4 - 1)
    for index in range(5):
        row, col = divmod(index, 2)
        assert (image[3 * row : 3 * row + 2, 4 * col : 4 * col + 3] == index).all()
    assert (image[2] == -1).all() and (image[:, 3] == -1).all() and (image[6:, 4:] == -1).all()


# --- after fine-tuning -----------------------------------------------------------------------------------------


def test_picture_rows_take_one_image_per_class_first():
    from vit_hf.training.look_inside import picture_rows

    assert picture_rows([3, 3, 1, 3, 2, 1, 0], 3) == [0, 2, 4]
    assert picture_rows([0, 0, 1, 0, 0], 4) == [0, 1, 2, 3]  # two classes: the rows that follow fill up
    assert picture_rows([0, 1], 6) == [0, 1]


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    from tests.data_utils import write_cifar_like
    from vit_hf.data import load_image_classification

    path = write_cifar_like(tmp_path_factory.mktemp("data") / "cifar10", n_train=100, n_test=30)
    return lambda: load_image_classification(str(path))


@pytest.mark.parametrize("on_device", [False, True])
def test_look_inside_draws_test_images_of_distinct_classes(cifar_like, on_device, tmp_path, monkeypatch):
    from vit_hf.data.transforms import Augmentation, DeviceTransform, Normalization, attach_transforms
    from vit_hf.image_processing_vit_hf import make_image_processor
    from vit_hf.training import look_inside

    data = cifar_like()
    processor = make_image_processor(32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    normalization = Normalization.from_image_processor(processor)
    attach_transforms(data, 32, normalization, Augmentation(), device_transforms=on_device)
    eval_transform = DeviceTransform(32, normalization, None, train=False) if on_device else None
    drawn = {}
    monkeypatch.setattr(look_inside, "write_pictures", lambda *args, **kwargs: drawn.update(args=args, **kwargs))
    model = model_for("plain")
    look_inside.draw_look_inside(model, data, eval_transform, processor, tmp_path)

    _, pixel_values, folder, mean, std = drawn["args"]
    labels = data.test.with_format(None)["label"]
    rows = look_inside.picture_rows(labels, look_inside.PICTURED_IMAGES)
    assert drawn["labels"] == [labels[row] for row in rows] and len(set(drawn["labels"])) == 6
    assert (folder, mean, std) == (tmp_path, processor.image_mean, processor.image_std)
    # the model's inputs, whichever path made them: the CPU transform of the same rows
    attach_transforms(data, 32, normalization, Augmentation())
    expected = torch.stack([data.test[row]["pixel_values"] for row in rows])
    torch.testing.assert_close(pixel_values, expected, atol=0.02, rtol=0)


def write_outputs_for(model, output_dir, draw_pictures):
    from vit_hf.data import ImageClassificationData
    from vit_hf.image_processing_vit_hf import make_image_processor
    from vit_hf.training.outputs import write_outputs

    data = ImageClassificationData(None, None, None, "img", "label", {i: str(i) for i in range(5)}, "digits")
    output_dir.mkdir()
    card_fields = dict(
        model_name="m", base_model=None, dataset_id=None, dataset_name="digits", hyperparameters={}, image_size=32
    )
    results = {"test_accuracy": 0.5}
    confusion = (torch.eye(5, dtype=torch.long), "test")
    processor = make_image_processor(32)
    log = [{"step": 1, "loss": 1.0}, {"step": 1, "eval_loss": 1.0, "eval_accuracy": 0.5, "eval_top5_accuracy": 1.0}]
    write_outputs(
        output_dir, model, model.state_dict(), processor, data, results, log, confusion, card_fields, draw_pictures
    )
    return set(path.name for path in output_dir.iterdir()), (output_dir / "README.md").read_text()


def test_output_folder_shows_the_pictures_in_the_model_card(tmp_path):
    model = model_for("hybrid")
    files, card = write_outputs_for(
        model,
        tmp_path / "out",
        lambda folder: write_pictures(model, torch.randn(2, 3, 32, 32), folder, [0.5] * 3, [0.5] * 3),
    )
    for name in ("attention_maps.png", "position_embeddings.png", "attention_distance.png"):
        assert name in files and f"]({name})" in card
    assert "](confusion_matrix.png)" in card


def test_output_folder_without_pictures_or_when_drawing_fails(tmp_path, caplog):
    model = model_for("plain")
    files, card = write_outputs_for(model, tmp_path / "off", None)
    assert "attention_maps.png" not in files and "attention_maps" not in card

    def broken(folder):
        raise RuntimeError("drawing broke")

    files, card = write_outputs_for(model, tmp_path / "broken", broken)
    assert {"model.safetensors", "README.md", "confusion_matrix.png"} <= files and "attention_maps" not in card
    assert "drawing broke" in caplog.text and "without them" in caplog.text


def test_look_inside_is_on_by_default_and_can_be_turned_off():
    from vit_hf.training.arguments import parse_arguments

    assert parse_arguments(["--dataset", "digits"])[2].look_inside is True
    assert parse_arguments(["--dataset", "digits", "--look_inside", "false"])[2].look_inside is False


def test_readme_look_inside_example_runs(tmp_path, monkeypatch):
    from tests.test_readme import python_blocks_under
    from vit_hf.image_processing_vit_hf import make_image_processor

    model = model_for("hybrid")
    model.save_pretrained(tmp_path / "outputs" / "quickstart")
    make_image_processor(32).save_pretrained(tmp_path / "outputs" / "quickstart")
    Image.fromarray(torch.randint(0, 256, (20, 20, 3), dtype=torch.uint8).numpy()).save(tmp_path / "digit.png")
    monkeypatch.chdir(tmp_path)
    (block,) = python_blocks_under("## Look inside")
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["rollout"].shape == (1, 4, 4)
    assert namespace["heads"].shape == (1, model.config.num_attention_heads, 4, 4)
    assert namespace["distances"].shape == (model.config.num_hidden_layers, model.config.num_attention_heads)


def test_titles_give_name_label_and_prediction_but_no_prediction_for_a_headless_model(tmp_path, monkeypatch):
    from vit_hf.visualize import pictures

    logits = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    titles = pictures.image_titles(2, logits, {0: "cat", 1: "dog"}, labels=[0, 0], names=["a.png", "b.png"])
    assert titles == ["a.png\ntrue: cat\npred: dog (88%)", "b.png\ntrue: cat\npred: cat (95%)"]
    drawn = {}
    monkeypatch.setattr(pictures, "plot_attention_maps", lambda *args: drawn.update(titles=args[3]))
    pictures.write_pictures(model_for("plain", num_labels=0), torch.randn(1, 3, 32, 32), tmp_path, [0.5] * 3, [0.5] * 3)
    assert drawn["titles"] == [""]
