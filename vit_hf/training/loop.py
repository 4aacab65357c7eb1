"""One fine-tuning run with Accelerate: set-up, the loop, evaluation, checkpoints and the final outputs.

`recipes/finetune.py` is the command-line entry point; tests and benchmarks import this module. The output folder
holds the model (`save_pretrained`, code included), its image processor, a model card, `all_results.json`, training
curves and a confusion matrix; checkpoints go to `checkpoint-<step>` inside it.
"""

import dataclasses
import gc
import logging
import math
import signal
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType, ProjectConfiguration, broadcast_object_list, set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..files import atomic_write, snapshot
from ..hub.upload import CheckpointUploads, HubPushError, check_hub_access, upload_or_explain
from .arguments import DataArguments, ModelArguments, TrainingArguments, trackers
from .checkpoint_state import (
    CheckpointError,
    accelerate_quietly,
    load_state,
    save_process_state,
    save_shared_state,
)
from .checkpointing import finalize_checkpoint, read_state, temporary_checkpoint_dir
from .console import estimate_run_time, summary_table
from .data_pipeline import build_data_pipeline, get_data
from .freezing import fine_tuning_method, freeze, train_mode
from .launch import check_process_count
from .look_inside import draw_look_inside
from .lora import apply_lora, merged_copy, trainable_parameters
from .metrics import ClassificationMetrics
from .model_loading import describe_architecture, load_model_for_finetuning, model_source, resolve_attn_implementation
from .optimization import create_optimizer, create_scheduler
from .output_dir import check_output_dir, check_output_dir_shared
from .outputs import write_outputs
from .run_ownership import OutputDirInUse, OutputDirLock, RunClaim, claim_output_dir
from .stopping import StopRequest, stop_with_launcher

logger = logging.getLogger("vit_hf.finetune")
BEST_WEIGHTS = "best_model.safetensors"  # inside a checkpoint: the best validation weights up to its step


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


def is_due(step: int, end_of_epoch: bool, strategy: str, every: int) -> bool:
    return (strategy == "epoch" and end_of_epoch) or (strategy == "steps" and step % every == 0)


class FineTuning:
    """One training run: set-up, the loop, evaluation, checkpoints and the final outputs."""

    def __init__(self, model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments):
        self.model_args, self.data_args, self.args = model_args, data_args, args
        self.accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=trackers(args.report_to),
            # Trackers log under <output_dir>/runs/ (transformers' Trainer's place too), which Hub uploads leave out.
            project_config=ProjectConfiguration(args.output_dir, logging_dir=str(Path(args.output_dir) / "runs")),
            cpu=args.use_cpu,
        )
        check_process_count(self.accelerator.num_processes)
        if not self.accelerator.is_main_process:
            logger.setLevel(logging.WARNING)
        stop_with_launcher()
        self.output_dir = Path(args.output_dir)
        self._check_setup()
        if self.claim.complete:
            return  # `latest` on a finished run: nothing to load or train
        set_seed(args.seed)  # the same on every process: a new model or head starts identical everywhere
        self.data = get_data(data_args, args.seed)
        attention = resolve_attn_implementation(
            model_args.attn_implementation, self.accelerator.device, self.accelerator.mixed_precision
        )
        model, source_processor, self.base_model = load_model_for_finetuning(
            dataclasses.replace(model_args, attn_implementation=attention), self.data.id2label
        )
        # From here on each process draws its own stochastic depth, MixUp and device-side augmentation.
        set_seed(args.seed, device_specific=True)
        self.image_size = model.config.image_size
        model.set_drop_path_rate(model_args.drop_path_rate)
        if args.gradient_checkpointing:
            model.activation_checkpointing_enable()
        model = self._choose_trainable_parameters(model)
        self._log_model_and_data(model, attention)
        pipeline = build_data_pipeline(
            self.data, source_processor, self.image_size, data_args, args, self.accelerator.device
        )
        self.processor, self.mixup = pipeline.processor, pipeline.mixup
        self.train_transform, self.eval_transform = pipeline.train_transform, pipeline.eval_transform
        self._prepare_training(model, pipeline)
        self.global_step, self.log_history, self.best = 0, [], {"accuracy": -1.0, "step": None}
        self.earlier_train_seconds = 0.0  # training time of the runs this one resumes
        if self.accelerator.log_with:
            config = {k: v for k, v in self.hyperparameters().items() if v is not None}
            self.accelerator.init_trackers("vit_hf", config=config)

    def _check_setup(self) -> None:
        """Everything that can fail before data and model are loaded: the launch, the Hub, the output folder."""
        accelerator, args = self.accelerator, self.args
        model_source(self.model_args)  # a mistyped --model fails here, before the data and any download
        if accelerator.distributed_type == DistributedType.FSDP and args.final_weights == "best":
            raise ValueError("With FSDP use --final_weights last (best-weight reloading needs a full state dict).")
        if accelerator.distributed_type == DistributedType.FSDP and args.ema_decay is not None:
            raise ValueError("--ema_decay is not supported with FSDP (the average would need the full weights).")
        if accelerator.distributed_type == DistributedType.FSDP and self.model_args.peft is not None:
            raise ValueError("--peft is not supported with FSDP here; LoRA runs on one device or with DDP.")
        self.repo_id = check_hub_access_once(accelerator, args.hub_model_id) if args.push_to_hub else None
        self.checkpoint_uploads = None
        if self.repo_id and args.hub_push_checkpoints and accelerator.is_main_process:
            self.checkpoint_uploads = CheckpointUploads(self.repo_id, private=args.hub_private_repo)
        check_output_dir(self.output_dir, args.resume_from_checkpoint, args.overwrite_output_dir)
        self.claim = self._claim_output_dir()
        accelerator.wait_for_everyone()
        check_output_dir_shared(accelerator, self.output_dir)

    def _claim_output_dir(self) -> RunClaim:
        """The main process locks --output_dir for this run and decides where the run starts; every process gets
        the outcome, so all of them stop on a refusal."""
        args, outcome, self.lock = self.args, None, None
        if self.accelerator.is_main_process:
            try:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                self.lock = OutputDirLock(self.output_dir)
                self.lock.acquire()
                outcome = claim_output_dir(self.output_dir, args.resume_from_checkpoint, args.overwrite_output_dir)
            except (ValueError, OutputDirInUse, CheckpointError) as error:
                outcome = error
        outcome = broadcast_object_list([outcome])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _choose_trainable_parameters(self, model):
        """Full fine-tuning, or part of the model: a PEFT LoRA model, or frozen modules (kept in eval mode)."""
        model_args = self.model_args
        self.frozen = freeze(model, model_args.freeze == "backbone", model_args.trainable_blocks)
        if model_args.peft == "lora":
            model = apply_lora(
                model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout, model_args.lora_mlp
            )
        self.trainable, self.total_parameters = trainable_parameters(model)
        return model

    def _log_model_and_data(self, model, attention: str) -> None:
        data = self.data
        logger.info(
            "%s: %.1fM parameters (%.2fM trained) at %s px, %s attention; %d train / %d validation / %s test "
            "examples, %d classes; writing to %s",
            self.model_args.model,
            self.total_parameters / 1e6,
            self.trainable / 1e6,
            self.image_size,
            attention,
            len(data.train),
            len(data.validation),
            len(data.test) if data.test is not None else "no",
            data.num_labels,
            self.output_dir,
        )

    def _prepare_training(self, model, pipeline) -> None:
        """Optimizer, EMA, compilation, `accelerator.prepare` and the schedule's length."""
        args, accelerator = self.args, self.accelerator
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

            self.ema = ModelEmaV3(model, decay=args.ema_decay)  # saved by `save_shared_state`, not pickled
        if args.torch_compile:
            model = torch.compile(model)
        self.model, self.optimizer, self.train_loader, self.validation_loader = accelerator.prepare(
            model, optimizer, pipeline.train_loader, pipeline.validation_loader
        )
        self.test_loader = accelerator.prepare(pipeline.test_loader) if pipeline.test_loader is not None else None
        self.steps_per_epoch = math.ceil(len(self.train_loader) / args.gradient_accumulation_steps)  # per process
        if args.max_steps > 0:
            self.total_steps = args.max_steps
        else:
            self.total_steps = math.ceil(args.num_epochs * self.steps_per_epoch)
        warmup = min(args.warmup_steps, self.total_steps)
        # Not given to prepare(): stepped once per optimizer step here, whatever the number of processes. Saved as
        # JSON by `save_shared_state`.
        self.scheduler = create_scheduler(self.optimizer, args.lr_scheduler_type, warmup, self.total_steps)

    def hyperparameters(self) -> dict:
        args, data_args = self.args, self.data_args
        processes = self.accelerator.num_processes
        return {
            "model": self.model_args.model,
            "model_overrides": self.model_args.model_overrides,
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
            "fine_tuning": fine_tuning_method(self.model_args),
            "trainable_parameters": self.trainable,
        }

    @property
    def eval_model(self):
        return self.ema.module if self.ema is not None else self.model

    def resume(self) -> None:
        """Continue from the checkpoint the claim chose (verified file by file), exactly or not at all."""
        checkpoint, accelerator = self.claim.checkpoint, self.accelerator
        if checkpoint is None:
            return
        try:
            with accelerate_quietly():
                accelerator.load_state(str(checkpoint))  # model (safetensors) and optimizer (loaded weights-only)
        except Exception as error:
            raise CheckpointError(f"{checkpoint} cannot be loaded ({type(error).__name__}: {error}).") from error
        load_state(checkpoint, accelerator.process_index, self.scheduler, self.ema)
        if accelerator.is_main_process:
            if (checkpoint / BEST_WEIGHTS).is_file():
                self.best_weights_file.parent.mkdir(exist_ok=True)
                snapshot(checkpoint / BEST_WEIGHTS, self.best_weights_file)
            else:  # best weights saved after this checkpoint: not this continuation's
                self.best_weights_file.unlink(missing_ok=True)
        accelerator.wait_for_everyone()
        state = read_state(checkpoint)
        self.global_step, self.log_history, self.best = state["step"], state["log_history"], state["best"]
        self.earlier_train_seconds = state.get("train_seconds", 0.0)
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
        with accelerate_quietly():
            accelerator.save_state(str(tmp))
        save_process_state(tmp, accelerator.process_index)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_shared_state(tmp, self.scheduler, self.ema)
            if self.best_weights_file.is_file():  # the best weights so far travel with the checkpoint
                snapshot(self.best_weights_file, tmp / BEST_WEIGHTS)
            state = {
                "step": self.global_step,
                "log_history": self.log_history,
                "best": self.best,
                "run_id": self.claim.run_id,
                "train_seconds": self.earlier_train_seconds + time.perf_counter() - self.train_start,
            }
            path = finalize_checkpoint(self.output_dir, self.global_step, state, self.args.save_total_limit)
            logger.info("saved %s", path)
            if self.checkpoint_uploads:
                self.checkpoint_uploads.start(path)
        accelerator.wait_for_everyone()

    def save_best_weights(self) -> None:
        state_dict = self.accelerator.get_state_dict(self.eval_model)
        if self.accelerator.is_main_process:
            with atomic_write(self.best_weights_file) as tmp:
                save_file({name: tensor.contiguous() for name, tensor in state_dict.items()}, str(tmp))
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
        self.steps_this_run = self.train_runtime = self.pause_seconds = 0
        if self.global_step >= self.total_steps:
            logger.info("the checkpoint is at the last step (%d): nothing left to train", self.total_steps)
            return None
        start_epoch = self.global_step // self.steps_per_epoch
        skip = (self.global_step - start_epoch * self.steps_per_epoch) * self.args.gradient_accumulation_steps
        self.progress = tqdm(
            total=self.total_steps,
            initial=self.global_step,
            desc="training",
            disable=not self.accelerator.is_local_main_process,
        )
        self.loss_sum, self.loss_count = torch.zeros((), device=self.accelerator.device), 0
        # evaluation and checkpoints go to pause_seconds, out of the training throughput
        start = self.train_start = time.perf_counter()
        with StopRequest() as stop, logging_redirect_tqdm():  # log lines printed above the bar, not onto it
            for epoch in range(start_epoch, math.ceil(self.total_steps / self.steps_per_epoch)):
                self.train_loader.set_epoch(epoch)
                loader = self.train_loader
                if epoch == start_epoch and skip:
                    loader = self.accelerator.skip_first_batches(self.train_loader, skip)
                train_mode(self.model, self.frozen)
                for batch in loader:
                    if not self.training_step(batch):
                        continue  # accumulating: no optimizer step yet
                    outcome = self.after_optimizer_step(stop)
                    if outcome == "stop":
                        self.progress.close()
                        return stop.name()
                    if outcome == "done":
                        break
        self.progress.close()
        self.train_runtime = time.perf_counter() - start
        return None

    def training_step(self, batch: dict) -> bool:
        """Forward and backward; the optimizer steps once every `gradient_accumulation_steps` batches. Returns
        whether it did."""
        accelerator, model = self.accelerator, self.model
        with accelerator.accumulate(model):
            loss = self.training_loss(batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.loss_sum += loss.detach()  # stays on the device: no host synchronisation per step
        self.loss_count += 1
        if not accelerator.sync_gradients:
            return False
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(accelerator.unwrap_model(model), step=self.global_step)
        self.global_step += 1
        self.steps_this_run += 1
        self.progress.update(1)
        return True

    def after_optimizer_step(self, stop: StopRequest) -> str | None:
        """The bookkeeping after each optimizer step: log, evaluate, check for a stop request, save. Returns
        "stop" (a signal asked to stop; a checkpoint is saved), "done" (the last step) or None."""
        args, accelerator = self.args, self.accelerator
        last_step = self.global_step >= self.total_steps
        end_of_epoch = accelerator.gradient_state.end_of_dataloader
        logging_step = self.global_step % args.logging_steps == 0 or last_step
        if logging_step:
            self.log_training_loss()
        pause = time.perf_counter()
        if last_step or is_due(self.global_step, end_of_epoch, args.eval_strategy, args.eval_steps):
            self.validate()
            train_mode(self.model, self.frozen)
        stop_now = stop.requested(accelerator, logging_step)
        save_due = last_step or is_due(self.global_step, end_of_epoch, args.save_strategy, args.save_steps)
        if stop_now or (args.save_strategy != "no" and save_due):
            self.save_checkpoint()
        self.pause_seconds += time.perf_counter() - pause
        if stop_now:
            return "stop"
        return "done" if last_step else None

    def log_training_loss(self) -> None:
        """The mean loss since the last logging step (one host synchronisation) and the learning rate."""
        mean_loss = self.accelerator.reduce(self.loss_sum / self.loss_count, reduction="mean").item()
        learning_rate = max(self.scheduler.get_last_lr())
        self.log({"loss": mean_loss, "learning_rate": learning_rate})
        self.progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{learning_rate:.2e}")
        self.loss_sum.zero_()
        self.loss_count = 0

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
        """Load the final weights (best validation step, or last) and evaluate them on validation; the test split
        comes after the model is written (`test_results`)."""
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
                train_runtime_total=self.earlier_train_seconds + self.train_runtime,
                train_evaluation_and_checkpoint_seconds=self.pause_seconds,
                train_steps_per_second=self.steps_this_run / training,
                train_samples_per_second=self.steps_this_run * batch / training,
            )
        train_losses = [entry["loss"] for entry in self.log_history if "loss" in entry]
        if train_losses:
            results["train_loss"] = train_losses[-1]
        validation = self.evaluate(model, self.validation_loader)
        results.update({f"eval_{k}": v for k, v in validation.compute().items()})
        return model, results, (validation.confusion, "validation")

    def test_results(self, model, results: dict, confusion):
        """The test split's metrics added to `results` (and its confusion matrix), when there is a test split."""
        if self.test_loader is None:
            return results, confusion
        try:
            test = self.evaluate(model, self.test_loader)
        except Exception:
            logger.error(
                "Evaluating the test split failed; the model and its validation results are in %s.", self.output_dir
            )
            raise
        return {**results, **{f"test_{k}": v for k, v in test.compute().items()}}, (test.confusion, "test")

    def write_outputs(self, model, state_dict: dict | None, results: dict, confusion, adapter=None) -> None:
        """The output folder; with `state_dict` None the model is already there and only results, log, pictures
        and card are written. A PEFT `adapter` is saved to its `adapter/` folder."""
        data = self.data
        local = Path(data.source).exists() or data.source == "digits"
        card_fields = dict(
            model_name=self.repo_id.split("/")[-1] if self.repo_id else self.output_dir.name,
            base_model=self.base_model,
            dataset_id=None if local else data.source,
            dataset_name=Path(data.source).name if local else data.source,
            hyperparameters=self.hyperparameters(),
            image_size=self.image_size,
            repo_id=self.repo_id,
            architecture=describe_architecture(model, self.model_args),
        )
        final = state_dict is None or self.test_loader is None  # the last write: after the test evaluation
        draw = partial(draw_look_inside, model, data, self.eval_transform, self.processor)
        write_outputs(
            self.output_dir,
            model,
            state_dict,
            self.processor,
            data,
            results,
            self.log_history,
            confusion,
            card_fields,
            draw if self.args.look_inside and final else None,
            adapter=adapter,
        )

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
        if self.lock is not None:
            self.lock.release()


def training_function(model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments) -> int:
    run = FineTuning(model_args, data_args, args)
    if run.claim.complete:
        run.lock.release()
        return 0
    is_main = run.accelerator.is_main_process
    run.resume()
    if is_main and run.global_step < run.total_steps:
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
        model = run.accelerator.unwrap_model(run.model)
        estimate_run_time(model, batch, run.image_size, run.total_steps - run.global_step, run.accelerator.device)
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
    adapter = None
    if model_args.peft is not None:  # the output folder's model is the merged one; the adapter goes beside it
        adapter, model = model, merged_copy(model)
    state_dict = run.accelerator.get_state_dict(model)  # a collective under FSDP: every process takes part
    if is_main:  # before the test split is read: a broken test image must not cost the trained model
        run.write_outputs(model, state_dict, results, confusion, adapter)
    if run.test_loader is not None:
        results, confusion = run.test_results(model, results, confusion)
        if is_main:
            run.write_outputs(model, None, results, confusion)
    logger.info("final results:\n%s", summary_table(results, run.output_dir))
    run.accelerator.log({f"final/{k}": v for k, v in results.items() if isinstance(v, (int, float))}, run.global_step)
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
