"""Fine-tune a Vision Transformer on an image-classification dataset with Accelerate.

    accelerate launch [--config_file accelerate_config.yaml] recipes/finetune.py [--config recipes/configs/X.yaml]
        [--key value ...]

With no arguments: ViT-B/16 (timm's ImageNet-21k weights) on CIFAR-10 at 224. `python recipes/finetune.py --help`
lists every flag. The output folder holds the model (`save_pretrained`, code included), its image processor, a model
card, `all_results.json`, training curves and a confusion matrix; checkpoints go to `checkpoint-<step>` inside it.
"""

import dataclasses
import gc
import json
import logging
import math
import shutil
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list, gather_object, set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vit_hf.arguments import DataArguments, ModelArguments, TrainingArguments, parse_arguments, trackers
from vit_hf.checkpointing import (
    finalize_checkpoint,
    read_state,
    remove_stale_temporaries,
    resolve_resume_path,
    snapshot,
    temporary_checkpoint_dir,
    write_json_atomic,
)
from vit_hf.data import ImageClassificationData, load_image_classification
from vit_hf.hub import CheckpointUploads, HubPushError, check_hub_access, upload_or_explain
from vit_hf.image_processing import make_image_processor
from vit_hf.metrics import ClassificationMetrics
from vit_hf.model_card import build_model_card
from vit_hf.model_loading import load_model_for_finetuning
from vit_hf.optimization import create_optimizer, create_scheduler
from vit_hf.plots import plot_confusion_matrix, plot_training_curves
from vit_hf.sampling import EpochShuffleSampler, PerExampleSeeded
from vit_hf.transforms import (
    Augmentation,
    DeviceTransform,
    MixupCutmix,
    Normalization,
    attach_transforms,
    collate,
    common_image_size,
)

logger = logging.getLogger("vit_hf.finetune")
SHARED_DIR_PATIENCE = 60.0  # seconds: NFS clients cache "no such file" answers for up to about a minute
BEST_WEIGHTS = "best_model.safetensors"  # inside a checkpoint: the best validation weights up to its step


class StopRequest:
    """Records SIGTERM / SIGINT; the loop then saves a checkpoint at the next step boundary and exits."""

    def __init__(self):
        self.signal_number = None
        self.previous = {}

    def __enter__(self):
        for number in (signal.SIGTERM, signal.SIGINT):
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number, frame):
        self.signal_number = number

    def requested(self, accelerator: Accelerator, sync_point: bool) -> bool:
        """Whether to stop now. Several processes must agree, which takes a collective: done at `sync_point` steps
        (the logging steps) only, not every step."""
        if accelerator.num_processes == 1:
            return self.signal_number is not None
        if self.signal_number is not None:
            accelerator.set_trigger()
        return sync_point and accelerator.check_trigger()


def get_data(data_args: DataArguments, seed: int) -> ImageClassificationData:
    data = load_image_classification(
        data_args.dataset,
        image_column=data_args.image_column,
        label_column=data_args.label_column,
        validation_fraction=data_args.validation_fraction,
        seed=seed,
    )
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_eval_samples,
    }
    for split, limit in limits.items():
        dataset = getattr(data, split)
        if limit is not None and dataset is not None and limit < len(dataset):
            setattr(data, split, dataset.shuffle(seed=seed).select(range(limit)))
    return data


def uses_device_transforms(setting: str, data: ImageClassificationData) -> bool:
    """`auto`: on when every image has one size (CIFAR: 32x32), so uint8 batches can travel to the device."""
    if setting != "auto":
        return setting == "on"
    try:
        common_image_size(data)
    except ValueError:
        return False
    return True


def dataloader(dataset, batch_size: int, seed: int | None, workers: int, pin_memory: bool) -> DataLoader:
    """Training loader when `seed` is given (shuffled by (seed, epoch), per-example seeded augmentation, equal
    batches); otherwise an evaluation loader that sees every example in order."""
    train = seed is not None
    return DataLoader(
        PerExampleSeeded(dataset, seed) if train else dataset,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(dataset), seed) if train else None,
        drop_last=train,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        # Its own generator: creating an iterator must not draw from the global one that augmentation and stochastic
        # depth use, or a resumed run would drift from an uninterrupted one.
        generator=torch.Generator().manual_seed(seed or 0),
    )


def check_output_dir(args: TrainingArguments) -> None:
    """Runs on every process, so that all of them stop on bad input instead of waiting for each other."""
    output_dir = Path(args.output_dir)
    # Hidden entries are temporaries of an interrupted run, removed at start.
    has_content = output_dir.is_dir() and any(not entry.name.startswith(".") for entry in output_dir.iterdir())
    if has_content and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        raise ValueError(
            f"--output_dir {output_dir} is not empty. Resume with --resume_from_checkpoint latest, pass "
            "--overwrite_output_dir true to train into it anyway, or choose another folder."
        )


def check_hub_access_once(accelerator: Accelerator, repo_id: str | None) -> str:
    """The Hub check on the main process only, its outcome shared, so every process stops on failure."""
    outcome = None
    if accelerator.is_main_process:
        try:
            outcome = check_hub_access(repo_id)
        except HubPushError as error:
            outcome = error
    outcome = broadcast_object_list([outcome])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def check_output_dir_shared(accelerator: Accelerator, output_dir: Path) -> None:
    """Checkpoints are assembled from every process's files in one folder, so each process must see the main one's
    --output_dir (across machines: a shared filesystem)."""
    if accelerator.num_processes == 1:
        return
    marker = output_dir / f".shared-{broadcast_object_list([uuid.uuid4().hex])[0]}"
    if accelerator.is_main_process:
        marker.touch()
    accelerator.wait_for_everyone()
    deadline = time.monotonic() + SHARED_DIR_PATIENCE  # a network filesystem may show a new file with some delay
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(1.0)
    visible = gather_object([(marker.exists(), socket.gethostname())])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker.unlink()
    blind = [f"process {rank} on {host}" for rank, (seen, host) in enumerate(visible) if not seen]
    if blind:
        raise ValueError(
            f"--output_dir {output_dir} is not shared: {', '.join(blind)} cannot see the files the main process "
            "writes there. With several machines, put --output_dir on a filesystem they all mount."
        )


def is_due(step: int, end_of_epoch: bool, strategy: str, every: int) -> bool:
    return (strategy == "epoch" and end_of_epoch) or (strategy == "steps" and step % every == 0)


class FineTuning:
    """One training run: set-up, the loop, evaluation, checkpoints and the final outputs."""

    def __init__(self, model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments):
        self.model_args, self.data_args, self.args = model_args, data_args, args
        self.accelerator = accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=trackers(args.report_to),
            project_dir=args.output_dir,
            cpu=args.use_cpu,
        )
        if not accelerator.is_main_process:
            logger.setLevel(logging.WARNING)
        if accelerator.distributed_type == DistributedType.FSDP and args.final_weights == "best":
            raise ValueError("With FSDP use --final_weights last (best-weight reloading needs a full state dict).")
        if accelerator.distributed_type == DistributedType.FSDP and args.ema_decay is not None:
            raise ValueError("--ema_decay is not supported with FSDP (the average would need the full weights).")
        self.output_dir = Path(args.output_dir)
        self.repo_id = check_hub_access_once(accelerator, args.hub_model_id) if args.push_to_hub else None
        self.checkpoint_uploads = None
        if self.repo_id and args.hub_push_checkpoints and accelerator.is_main_process:
            self.checkpoint_uploads = CheckpointUploads(self.repo_id, private=args.hub_private_repo)
        check_output_dir(args)
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.output_dir)
        accelerator.wait_for_everyone()
        check_output_dir_shared(accelerator, self.output_dir)
        set_seed(args.seed)  # the same on every process: a new model or head starts identical everywhere

        self.data = data = get_data(data_args, args.seed)
        model, self.processor, self.base_model = load_model_for_finetuning(model_args, data.id2label)
        # From here on each process draws its own stochastic depth, MixUp and device-side augmentation.
        set_seed(args.seed, device_specific=True)
        self.image_size = model.config.image_size
        model.set_drop_path_rate(model_args.drop_path_rate)
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        logger.info(
            "%s: %.1fM parameters at %s px; %d train / %d validation / %s test examples, %d classes",
            model_args.model,
            sum(p.numel() for p in model.parameters()) / 1e6,
            self.image_size,
            len(data.train),
            len(data.validation),
            len(data.test) if data.test is not None else "no",
            data.num_labels,
        )
        self._build_data_pipeline()

        model.to(accelerator.device)
        optimizer = create_optimizer(
            model,
            args.optimizer,
            args.learning_rate,
            weight_decay=args.weight_decay,
            momentum=args.momentum,
            layer_decay=args.layer_decay,
        )
        self.ema = None
        if args.ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=args.ema_decay)
            accelerator.register_for_checkpointing(self.ema)
        if args.torch_compile:
            model = torch.compile(model)
        self.model, self.optimizer, self.train_loader, self.validation_loader = accelerator.prepare(
            model, optimizer, self.train_loader, self.validation_loader
        )
        if self.test_loader is not None:
            self.test_loader = accelerator.prepare(self.test_loader)
        self.steps_per_epoch = math.ceil(len(self.train_loader) / args.gradient_accumulation_steps)  # per process
        if args.max_steps > 0:
            self.total_steps = args.max_steps
        else:
            self.total_steps = math.ceil(args.num_epochs * self.steps_per_epoch)
        warmup = min(args.warmup_steps, self.total_steps)
        self.scheduler = create_scheduler(self.optimizer, args.lr_scheduler_type, warmup, self.total_steps)
        # Not given to prepare(): stepped once per optimizer step here, whatever the number of processes.
        accelerator.register_for_checkpointing(self.scheduler)

        self.global_step, self.log_history, self.best = 0, [], {"accuracy": -1.0, "step": None}
        if accelerator.log_with:
            config = {k: v for k, v in self.hyperparameters().items() if v is not None}
            accelerator.init_trackers("vit_hf", config=config)

    def _build_data_pipeline(self) -> None:
        data_args, args, data = self.data_args, self.args, self.data
        # The source's normalisation and resize kernel, at the training size with the evaluation crop chosen here.
        source = Normalization.from_image_processor(self.processor)
        self.normalization = dataclasses.replace(source, crop_pct=data_args.eval_crop_pct)
        self.processor = make_image_processor(
            self.image_size, source.mean, source.std, data_args.eval_crop_pct, source.interpolation
        )
        augmentation = Augmentation(
            scale=(data_args.crop_scale_min, 1.0),
            hflip=data_args.hflip,
            auto_augment=data_args.auto_augment,
            random_erasing=data_args.random_erasing,
        )
        on_device = uses_device_transforms(data_args.device_transforms, data)
        attach_transforms(data, self.image_size, self.normalization, augmentation, device_transforms=on_device)
        self.train_transform = self.eval_transform = None
        if on_device:
            device = self.accelerator.device
            self.train_transform = DeviceTransform(self.image_size, self.normalization, augmentation, train=True)
            self.eval_transform = DeviceTransform(self.image_size, self.normalization, augmentation, train=False)
            self.train_transform.to(device)
            self.eval_transform.to(device)
        logger.info("transforms run on %s", "the device, from uint8 batches" if on_device else "the CPU, per image")
        self.mixup = None
        if data_args.mixup_alpha > 0 or data_args.cutmix_alpha > 0:
            self.mixup = MixupCutmix(
                data.num_labels,
                mixup_alpha=data_args.mixup_alpha,
                cutmix_alpha=data_args.cutmix_alpha,
                label_smoothing=args.label_smoothing,
            )
        workers = data_args.dataloader_num_workers
        pin = self.accelerator.device.type == "cuda"
        self.train_loader = dataloader(data.train, args.per_device_train_batch_size, args.seed, workers, pin)
        if len(self.train_loader) == 0:
            raise ValueError(
                f"The training split has {len(data.train)} examples, fewer than one batch of "
                f"{args.per_device_train_batch_size}: lower --per_device_train_batch_size."
            )
        self.validation_loader = dataloader(data.validation, args.per_device_eval_batch_size, None, workers, pin)
        self.test_loader = None
        if data.test is not None:
            self.test_loader = dataloader(data.test, args.per_device_eval_batch_size, None, workers, pin)

    def hyperparameters(self) -> dict:
        args, data_args = self.args, self.data_args
        processes = self.accelerator.num_processes
        return {
            "model": self.model_args.model,
            "image_size": self.image_size,
            "dataset": data_args.dataset,
            "optimizer": args.optimizer,
            "learning_rate": args.learning_rate,
            "lr_scheduler_type": args.lr_scheduler_type,
            "warmup_steps": args.warmup_steps,
            "weight_decay": args.weight_decay,
            "layer_decay": args.layer_decay,
            "total_batch_size": args.per_device_train_batch_size * processes * args.gradient_accumulation_steps,
            "training_steps": self.total_steps,
            "max_grad_norm": args.max_grad_norm,
            "label_smoothing": args.label_smoothing,
            "mixup_alpha": data_args.mixup_alpha,
            "cutmix_alpha": data_args.cutmix_alpha,
            "drop_path_rate": self.model_args.drop_path_rate,
            "ema_decay": args.ema_decay,
            "mixed_precision": self.accelerator.mixed_precision,
            "num_processes": processes,
            "seed": args.seed,
        }

    @property
    def eval_model(self):
        return self.ema.module if self.ema is not None else self.model

    def resume(self) -> None:
        checkpoint = resolve_resume_path(self.args.resume_from_checkpoint, self.output_dir)
        if checkpoint is None:
            return
        self.accelerator.load_state(str(checkpoint))
        if self.accelerator.is_main_process and (checkpoint / BEST_WEIGHTS).is_file():
            self.best_weights_file.parent.mkdir(exist_ok=True)
            snapshot(checkpoint / BEST_WEIGHTS, self.best_weights_file)
        self.accelerator.wait_for_everyone()
        state = read_state(checkpoint)
        self.global_step, self.log_history, self.best = state["step"], state["log_history"], state["best"]
        logger.info("resumed from %s at step %d", checkpoint, self.global_step)

    def evaluate(self, model, loader) -> ClassificationMetrics:
        """Every example exactly once across processes (gather_for_metrics drops the last batch's padding)."""
        metrics = ClassificationMetrics(self.data.num_labels)
        model.eval()
        with torch.no_grad():
            for batch in loader:
                pixel_values = batch["pixel_values"]
                if self.eval_transform is not None:
                    pixel_values = self.eval_transform(pixel_values)
                with self.accelerator.autocast():
                    logits = model(pixel_values=pixel_values).logits
                losses = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
                metrics.update(*self.accelerator.gather_for_metrics((logits, batch["labels"], losses)))
        return metrics

    @property
    def best_weights_file(self) -> Path:
        return self.output_dir / "best" / "model.safetensors"

    def save_checkpoint(self) -> None:
        accelerator = self.accelerator
        tmp = temporary_checkpoint_dir(self.output_dir, self.global_step)
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if self.best_weights_file.is_file():  # the best weights so far travel with the checkpoint
                snapshot(self.best_weights_file, tmp / BEST_WEIGHTS)
            state = {"step": self.global_step, "log_history": self.log_history, "best": self.best}
            path = finalize_checkpoint(self.output_dir, self.global_step, state, self.args.save_total_limit)
            logger.info("saved %s", path)
            if self.checkpoint_uploads:
                self.checkpoint_uploads.start(path)
        accelerator.wait_for_everyone()

    def save_best_weights(self) -> None:
        state_dict = self.accelerator.get_state_dict(self.eval_model)
        if self.accelerator.is_main_process:
            self.best_weights_file.parent.mkdir(exist_ok=True)
            tmp = self.best_weights_file.with_name(".model.safetensors.tmp")
            save_file({name: tensor.contiguous() for name, tensor in state_dict.items()}, str(tmp))
            tmp.replace(self.best_weights_file)
        self.accelerator.wait_for_everyone()

    def log(self, values: dict) -> None:
        entry = {"step": self.global_step, "epoch": round(self.global_step / self.steps_per_epoch, 4), **values}
        self.log_history.append(entry)
        self.accelerator.log(values, step=self.global_step)

    def validate(self) -> None:
        results = self.evaluate(self.eval_model, self.validation_loader).compute()
        self.log({f"eval_{k}": v for k, v in results.items() if k != "num_examples"})
        logger.info(
            "step %d: validation accuracy %.4f, top-5 %.4f, loss %.4f",
            self.global_step,
            results["accuracy"],
            results["top5_accuracy"],
            results["loss"],
        )
        if results["accuracy"] > self.best["accuracy"]:
            self.best = {"accuracy": results["accuracy"], "step": self.global_step}
            if self.args.final_weights == "best":
                self.save_best_weights()

    def train(self) -> str | None:
        """The loop. Returns the name of the signal that stopped it early, or None when it ran to the end."""
        args, accelerator, model = self.args, self.accelerator, self.model
        self.steps_this_run = self.train_runtime = self.pause_seconds = 0
        if self.global_step >= self.total_steps:
            logger.info("the checkpoint is at the last step (%d): nothing left to train", self.total_steps)
            return None
        start_epoch = self.global_step // self.steps_per_epoch
        skip = (self.global_step - start_epoch * self.steps_per_epoch) * args.gradient_accumulation_steps
        progress = tqdm(
            total=self.total_steps,
            initial=self.global_step,
            desc="training",
            disable=not accelerator.is_local_main_process,
        )
        loss_sum, loss_count = torch.zeros((), device=accelerator.device), 0
        start = time.perf_counter()  # evaluation and checkpoints go to pause_seconds, out of the training throughput
        with StopRequest() as stop:
            for epoch in range(start_epoch, math.ceil(self.total_steps / self.steps_per_epoch)):
                self.train_loader.set_epoch(epoch)
                loader = self.train_loader
                if epoch == start_epoch and skip:
                    loader = accelerator.skip_first_batches(self.train_loader, skip)
                model.train()
                for batch in loader:
                    with accelerator.accumulate(model):
                        loss = self.training_loss(batch)
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and args.max_grad_norm > 0:
                            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    loss_sum += loss.detach()  # stays on the device: no host synchronisation per step
                    loss_count += 1
                    if not accelerator.sync_gradients:
                        continue
                    self.scheduler.step()
                    if self.ema is not None:
                        self.ema.update(accelerator.unwrap_model(model), step=self.global_step)
                    self.global_step += 1
                    self.steps_this_run += 1
                    progress.update(1)
                    last_step = self.global_step >= self.total_steps
                    end_of_epoch = accelerator.gradient_state.end_of_dataloader
                    logging_step = self.global_step % args.logging_steps == 0 or last_step
                    if logging_step:
                        mean_loss = accelerator.reduce(loss_sum / loss_count, reduction="mean").item()
                        learning_rate = max(self.scheduler.get_last_lr())
                        self.log({"loss": mean_loss, "learning_rate": learning_rate})
                        progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{learning_rate:.2e}")
                        loss_sum.zero_()
                        loss_count = 0
                    pause = time.perf_counter()
                    if last_step or is_due(self.global_step, end_of_epoch, args.eval_strategy, args.eval_steps):
                        self.validate()
                        model.train()
                    stop_now = stop.requested(accelerator, logging_step)
                    save_due = last_step or is_due(self.global_step, end_of_epoch, args.save_strategy, args.save_steps)
                    if stop_now or (args.save_strategy != "no" and save_due):
                        self.save_checkpoint()
                    self.pause_seconds += time.perf_counter() - pause
                    if stop_now:
                        progress.close()
                        # On a process that only learned of another's signal, report SIGTERM.
                        return signal.Signals(stop.signal_number or signal.SIGTERM).name
                    if last_step:
                        break
        progress.close()
        self.train_runtime = time.perf_counter() - start
        return None

    def training_loss(self, batch: dict) -> torch.Tensor:
        pixel_values, labels = batch["pixel_values"], batch["labels"]
        if self.train_transform is not None:
            pixel_values = self.train_transform(pixel_values)
        targets, smoothing = labels, self.args.label_smoothing
        if self.mixup is not None:
            pixel_values, targets = self.mixup(pixel_values, labels)  # soft targets, smoothing included
            smoothing = 0.0
        logits = self.model(pixel_values=pixel_values).logits
        return F.cross_entropy(logits.float(), targets, label_smoothing=smoothing)

    def final_results(self):
        """Load the final weights (best validation step, or last), evaluate validation and test."""
        model = self.accelerator.unwrap_model(self.eval_model)
        if self.args.final_weights == "best" and self.best_weights_file.is_file():
            model.load_state_dict(load_file(str(self.best_weights_file)))
            logger.info("final weights: the best validation accuracy, at step %s", self.best["step"])
        results = {
            "step": self.global_step,
            "epoch": self.global_step / self.steps_per_epoch,
            "best_step": self.best["step"],
        }
        if self.steps_this_run:  # (a resumed run with nothing left to train has no timings to report)
            batch = self.hyperparameters()["total_batch_size"]
            training = self.train_runtime - self.pause_seconds  # training itself, without evaluations and checkpoints
            results.update(
                train_runtime=self.train_runtime,
                train_evaluation_and_checkpoint_seconds=self.pause_seconds,
                train_steps_per_second=self.steps_this_run / training,
                train_samples_per_second=self.steps_this_run * batch / training,
            )
        train_losses = [entry["loss"] for entry in self.log_history if "loss" in entry]
        if train_losses:
            results["train_loss"] = train_losses[-1]
        validation = self.evaluate(model, self.validation_loader)
        results.update({f"eval_{k}": v for k, v in validation.compute().items()})
        confusion = (validation.confusion, "validation")
        if self.test_loader is not None:
            test = self.evaluate(model, self.test_loader)
            results.update({f"test_{k}": v for k, v in test.compute().items()})
            confusion = (test.confusion, "test")
        return model, results, confusion

    def write_outputs(self, model, state_dict: dict, results: dict, confusion) -> None:
        """Everything a user opens after training, each file moved into place whole. Main process only; `state_dict`
        is the full one (under FSDP gathered from every process)."""
        data = self.data
        model.config.id2label, model.config.label2id = data.id2label, data.label2id
        tmp = self.output_dir / ".final-tmp"
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing
        tmp.mkdir()
        model.save_pretrained(tmp, state_dict=state_dict)
        self.processor.save_pretrained(tmp)
        write_json_atomic(tmp / "all_results.json", results)
        write_json_atomic(tmp / "log_history.json", self.log_history)
        plot_training_curves(self.log_history, tmp / "training_curves.png")
        labels = [data.id2label[i] for i in range(data.num_labels)]
        matrix, split = confusion
        plot_confusion_matrix(matrix, labels, tmp / "confusion_matrix.png", f"Confusion matrix ({split} split)")
        local = Path(data.source).exists() or data.source == "digits"
        card = build_model_card(
            model_name=self.repo_id.split("/")[-1] if self.repo_id else self.output_dir.name,
            base_model=self.base_model,
            dataset_id=None if local else data.source,
            dataset_name=Path(data.source).name if local else data.source,
            results=results,
            hyperparameters=self.hyperparameters(),
            image_size=self.image_size,
            pictures=["training_curves.png", "confusion_matrix.png"],
            repo_id=self.repo_id,
        )
        card.save(tmp / "README.md")
        for path in sorted(tmp.iterdir()):
            path.replace(self.output_dir / path.name)
        tmp.rmdir()

    def finish(self) -> None:
        """Shut down so that every process exits 0. The DDP wrapper keeps the gloo/NCCL process group alive past
        `destroy_process_group`; its worker threads then outlive the interpreter, and one still releasing a finished
        all_gather's tensors takes the GIL during shutdown, which ends in std::terminate (SIGABRT) in about one run
        in three on a busy CPU. Dropping the wrapped objects first lets the group be destroyed and its threads
        joined while Python is fully alive."""
        self.accelerator.wait_for_everyone()
        self.model = self.optimizer = self.scheduler = self.ema = None
        self.train_loader = self.validation_loader = self.test_loader = None
        self.accelerator.free_memory()
        gc.collect()
        self.accelerator.end_training()


def training_function(model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments) -> int:
    run = FineTuning(model_args, data_args, args)
    is_main = run.accelerator.is_main_process
    run.resume()
    stopped_by = run.train()
    if stopped_by:
        logger.warning(
            "%s received: saved checkpoint-%d; continue with --resume_from_checkpoint latest",
            stopped_by,
            run.global_step,
        )
        run.finish()
        if run.checkpoint_uploads:
            run.checkpoint_uploads.wait()
        return 128 + signal.Signals[stopped_by].value
    model, results, confusion = run.final_results()
    state_dict = run.accelerator.get_state_dict(model)  # a collective under FSDP: every process takes part
    logger.info("final results: %s", json.dumps(results, indent=1))
    run.accelerator.log({f"final/{k}": v for k, v in results.items() if isinstance(v, (int, float))}, run.global_step)
    if is_main:
        run.write_outputs(model, state_dict, results, confusion)
    run.finish()
    # Uploads run after the processes have parted, so none waits in a collective (and times out) meanwhile.
    if run.checkpoint_uploads:
        run.checkpoint_uploads.wait()
    if is_main and run.repo_id:
        pushed = upload_or_explain(
            run.output_dir, run.repo_id, commit_message="End of training", private=args.hub_private_repo
        )
        return 0 if pushed else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_arguments(argv)
    return training_function(model_args, data_args, training_args)


if __name__ == "__main__":
    sys.exit(main())
