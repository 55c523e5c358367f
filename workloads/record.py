"""Record real routing traces: run text through a Hugging Face MoE model, keep every router's top-k.

Real routers carry what synthetic ones only imitate (token affinity, layer dependency, hot
experts), so a trace recorded from the model itself is the reference workload. The recorder
puts a forward hook on every router module (the ``gate`` / ``router`` child of each block that
has ``experts``), reads the router logits the model computed and applies the family's own
selection rule to them (`RoutingRule`): softmax then top-k (Mixtral, Qwen-MoE, OLMoE,
DeepSeek-V2 greedy), DeepSeek-V2's group-limited greedy, DeepSeek-V3's sigmoid + correction
bias + group-limited top-k, Switch's top-1. Choices are stored best first.

The text becomes one token stream, cut into sequences of `max_length` tokens (each an
independent forward pass, no padding); an iteration is `tokens_per_iteration /
max_length` consecutive sequences; a tail shorter than one iteration is dropped.

torch and transformers are imported only when recording (``pip install -e ".[record]"``, which includes torch).
Nothing is downloaded unless the model is a hub name (``org/name``) that is not a local path.
"""

import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.safeio import check_regular_file
from simulator.safeio.files import text_limit_bytes
from workloads.errors import WorkloadError
from workloads.trace import RoutingTrace

# config.model_type -> how that family's router turns logits into choices
SOFTMAX_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe")
SUPPORTED_FAMILIES = (*SOFTMAX_FAMILIES, "deepseek_v2", "deepseek_v3", "switch_transformers")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                    "spiece.model", "sentencepiece.bpe.model")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BLOCK_INDEX = re.compile(r"(?:^|\.)(?:layers|block|h|blocks)\.(\d+)(?:\.|$)")
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok")
FEATURE_DTYPES = ("float16", "float32")
MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class RoutingRule:
    """A router's selection rule; `select` maps float32 logits [n, E] to (indices, weights).

    `kind`: ``softmax_topk`` (softmax, top-k), ``softmax_group_limited`` (DeepSeek-V2
    ``group_limited_greedy``: keep the `topk_group` groups with the highest max probability),
    ``sigmoid_group_limited`` (DeepSeek-V3 ``noaux_tc``: sigmoid scores plus the correction
    bias choose, groups ranked by the sum of their two best biased scores; weights are the
    unbiased scores). `normalise` renormalises the chosen weights to sum 1 (affects weights
    only, never the choice); `scale` multiplies them (DeepSeek's ``routed_scaling_factor``).
    """

    kind: str
    top_k: int
    normalise: bool = False
    scale: float = 1.0
    n_group: int = 1
    topk_group: int = 1

    def select(self, logits, bias=None):
        """(indices int64 [n, k], weights float32 [n, k]) best first, as torch tensors."""
        import torch

        logits = logits.float()
        experts = logits.shape[-1]
        if self.kind == "softmax_topk":
            scores = torch.softmax(logits, dim=-1)
            weights, indices = torch.topk(scores, self.top_k, dim=-1)
        elif self.kind == "softmax_group_limited":
            scores = torch.softmax(logits, dim=-1)
            grouped = scores.view(-1, self.n_group, experts // self.n_group)
            keep = self._group_mask(grouped.max(dim=-1).values, experts)
            weights, indices = torch.topk(scores.masked_fill(~keep, 0.0), self.top_k, dim=-1)
        elif self.kind == "sigmoid_group_limited":
            scores = torch.sigmoid(logits)
            choice = scores if bias is None else scores + bias.float()
            grouped = choice.view(-1, self.n_group, experts // self.n_group)
            keep = self._group_mask(grouped.topk(2, dim=-1).values.sum(dim=-1), experts)
            _, indices = torch.topk(choice.masked_fill(~keep, float("-inf")), self.top_k, dim=-1)
            weights = scores.gather(1, indices)
        else:
            raise ValueError(f"unknown routing rule {self.kind!r}")
        if self.normalise:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return indices, weights * self.scale

    def _group_mask(self, group_scores, experts: int):
        import torch

        chosen = torch.topk(group_scores, self.topk_group, dim=-1).indices
        mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, chosen, True)
        return mask.repeat_interleave(experts // self.n_group, dim=1)

    def describe(self) -> str:
        text = {"softmax_topk": f"softmax then top-{self.top_k}",
                "softmax_group_limited": (f"softmax, best {self.topk_group} of {self.n_group} "
                                          f"groups by max score, then top-{self.top_k}"),
                "sigmoid_group_limited": (f"sigmoid + e_score_correction_bias, best "
                                          f"{self.topk_group} of {self.n_group} groups by top-2 "
                                          f"sum, then top-{self.top_k}")}[self.kind]
        return text + (", weights renormalised" if self.normalise else "") + (
            f", weights x {self.scale:g}" if self.scale != 1.0 else "")


def routing_rule(config) -> RoutingRule:
    """The selection rule of a transformers config (by ``model_type``)."""
    family = getattr(config, "model_type", None)
    top_k = getattr(config, "num_experts_per_tok", None)
    if family == "mixtral":  # Mixtral always renormalises its top-k weights
        return RoutingRule("softmax_topk", top_k, normalise=True)
    if family in SOFTMAX_FAMILIES:
        return RoutingRule("softmax_topk", top_k,
                           normalise=bool(getattr(config, "norm_topk_prob", False)))
    if family == "switch_transformers":
        return RoutingRule("softmax_topk", 1)
    if family in ("deepseek_v2", "deepseek_v3"):
        groups = dict(n_group=int(getattr(config, "n_group", None) or 1),
                      topk_group=int(getattr(config, "topk_group", None) or 1))
        normalise = bool(getattr(config, "norm_topk_prob", False))
        scale = float(getattr(config, "routed_scaling_factor", 1.0) or 1.0)
        method = getattr(config, "topk_method", "noaux_tc" if family == "deepseek_v3" else "greedy")
        if method == "greedy":
            return RoutingRule("softmax_topk", top_k, normalise, 1.0 if normalise else scale)
        if method == "group_limited_greedy":
            return RoutingRule("softmax_group_limited", top_k, normalise,
                               1.0 if normalise else scale, **groups)
        if method == "noaux_tc":
            return RoutingRule("sigmoid_group_limited", top_k, normalise, scale, **groups)
        raise WorkloadError(f"unsupported DeepSeek topk_method {method!r}; supported: greedy, "
                            "group_limited_greedy, noaux_tc", "--model")
    raise WorkloadError(f"unsupported MoE family {family!r}; supported model types: "
                        f"{', '.join(SUPPORTED_FAMILIES)}", "--model")


def find_routers(model) -> list[tuple[str, object]]:
    """(name, module) of every router in forward order: the `gate`/`router` beside `experts`."""
    import torch

    routers = []
    for name, module in model.named_modules():
        if not isinstance(getattr(module, "experts", None), torch.nn.Module):
            continue
        for attribute in ("gate", "router"):
            child = getattr(module, attribute, None)
            if isinstance(child, torch.nn.Module):
                routers.append((f"{name}.{attribute}" if name else attribute, child))
                break
    return routers


def block_indices(names: Sequence[str], config) -> list[int]:
    """Transformer-block index of each router (decoder blocks of encoder-decoders follow the
    encoder's, as in the model catalogue)."""
    encoder_blocks = int(getattr(config, "num_layers", 0) or 0)
    indices = []
    for name in names:
        match = _BLOCK_INDEX.search(name)
        index = int(match.group(1)) if match else -1
        if getattr(config, "is_encoder_decoder", False) and ".decoder." in f".{name}":
            index += encoder_blocks
        indices.append(index)
    return indices


def route_sequences(model, sequences: np.ndarray, rule: RoutingRule, *, batch_size: int = 1,
                    features_layer: int | None = None, features_dtype: str = "float32",
                    device: str = "cpu", decoder_start_token_id: int = 0) -> dict:
    """Run `sequences` (int [n, L]) through `model`; every router's choices per token.

    Returns ``experts`` int32 [n, layers, L, k], ``weights`` float32 like it, ``features``
    ([n, L, d] in `features_dtype`, the input of router `features_layer`, or None),
    ``routers`` (names) and ``num_experts`` (width of the router logits).
    Encoder-decoder models get the same tokens on both sides, the decoder's shifted right by
    one (teacher forcing), so token t's decoder routing has seen tokens < t.
    """
    import torch

    if len(sequences) == 0:
        raise WorkloadError("no sequences to route", "--text")
    routers = find_routers(model)
    if not routers:
        raise WorkloadError("no router found: no module has `experts` beside a `gate` or "
                            f"`router` (supported model types: {', '.join(SUPPORTED_FAMILIES)})",
                            "--model")
    if features_layer is not None and not 0 <= features_layer < len(routers):
        raise WorkloadError(f"must be in 0..{len(routers) - 1} (the model has {len(routers)} "
                            f"MoE layers), got {features_layer}", "--features-layer")
    captured: list[list] = [[] for _ in routers]
    widths: set[int] = set()
    keep_dtype = getattr(torch, features_dtype)

    def hook_for(slot: int):
        def hook(module, args, kwargs, output):
            hidden = args[0] if args else kwargs["hidden_states"]
            hidden = hidden.reshape(-1, hidden.shape[-1])
            logits = _router_logits(module, hidden, output)
            widths.add(int(logits.shape[-1]))
            bias = getattr(module, "e_score_correction_bias", None)
            indices, weights = rule.select(logits, bias)
            keep = hidden.to(keep_dtype).cpu() if slot == features_layer else None
            captured[slot].append((indices.to(torch.int32).cpu(), weights.float().cpu(), keep))
        return hook

    handles = [module.register_forward_hook(hook_for(slot), with_kwargs=True)
               for slot, (_, module) in enumerate(routers)]
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    experts, weights, features = [], [], []
    try:
        with torch.inference_mode():
            for start in range(0, len(sequences), batch_size):
                ids = torch.as_tensor(np.asarray(sequences[start:start + batch_size]),
                                      dtype=torch.long, device=device)
                for slot in captured:
                    slot.clear()
                inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                if encoder_decoder:
                    shifted = torch.full_like(ids, decoder_start_token_id)
                    shifted[:, 1:] = ids[:, :-1]
                    inputs["decoder_input_ids"] = shifted
                else:
                    inputs["use_cache"] = False
                model(**inputs)
                batch, length = ids.shape
                for slot, (name, _) in zip(captured, routers, strict=True):
                    if len(slot) != 1:
                        raise WorkloadError(f"router {name} ran {len(slot)} times in one forward "
                                            "pass; expected once", "--model")
                experts.append(np.stack([s[0][0].numpy().reshape(batch, length, -1)
                                         for s in captured], axis=1))
                weights.append(np.stack([s[0][1].numpy().reshape(batch, length, -1)
                                         for s in captured], axis=1))
                if features_layer is not None:
                    features.append(captured[features_layer][0][2].numpy().reshape(
                        batch, length, -1))
    finally:
        for handle in handles:
            handle.remove()
    return {"experts": np.concatenate(experts), "weights": np.concatenate(weights),
            "features": np.concatenate(features) if features else None,
            "routers": [name for name, _ in routers], "num_experts": max(widths)}


def _router_logits(module, hidden, output):
    """The logits the router computed: the float output whose last dim is the expert count
    (a bare Linear gate, or the (logits, weights, indices) / (mask, probs, logits) tuples),
    else recomputed from the module's weight (routers that return only their choices)."""
    import torch

    weight, bias = _router_weight(module)
    experts = weight.shape[0] if weight is not None else None
    candidates = output if isinstance(output, tuple | list) else (output,)
    for value in candidates:
        if (isinstance(value, torch.Tensor) and value.is_floating_point()
                and (experts is None or value.shape[-1] == experts)):
            return value.reshape(-1, value.shape[-1])
    if weight is None:
        raise WorkloadError(f"cannot read the logits of router {type(module).__name__}", "--model")
    return torch.nn.functional.linear(hidden.float(), weight.float(),
                                      None if bias is None else bias.float())


def _router_weight(module):
    for holder in (module, getattr(module, "classifier", None)):
        weight = getattr(holder, "weight", None)
        if weight is not None and getattr(weight, "ndim", 0) == 2:
            return weight, getattr(holder, "bias", None)
    return None, None


# --- from files to a trace ------------------------------------------------------------------

def byte_tokens(text: str, vocab_size: int) -> np.ndarray:
    """The fallback tokenizer: UTF-8 byte values (modulo `vocab_size` when it is below 256)."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    return data % vocab_size if vocab_size < 256 else data


def record_trace(model: str, text: str | Path, *, tokens_per_iteration: int = 2048,
                 iterations: int | None = None, batch_size: int = 1,
                 max_length: int | None = None, tokenizer: str | None = None,
                 features: bool = False, features_layer: int = 0,
                 features_dtype: str = "float16", weights: bool = False,
                 device: str = "cpu", dtype: str = "auto") -> RoutingTrace:
    """Record a trace of `model` (local dir, or hub name ``org/name``) on the text file `text`.

    `tokenizer`: a path or hub name, ``"bytes"`` for UTF-8 bytes; default the model's own
    tokenizer, or bytes when the model directory has none. `features` keeps the hidden state
    entering MoE layer `features_layer`'s router (large: tokens x hidden). `dtype` ``auto``
    is float32 on CPU and the checkpoint's dtype elsewhere.
    """
    torch, transformers = _import_backends()
    _check_positive(tokens_per_iteration, "--tokens-per-iteration")
    _check_positive(batch_size, "--batch-size")
    if iterations is not None:
        _check_positive(iterations, "--iterations")
    if features_dtype not in FEATURE_DTYPES:
        raise WorkloadError(f"must be one of {', '.join(FEATURE_DTYPES)}, got {features_dtype!r}",
                            "--features-dtype")
    if dtype not in MODEL_DTYPES:
        raise WorkloadError(f"must be one of {', '.join(MODEL_DTYPES)}, got {dtype!r}", "--dtype")
    text_path = Path(text)
    corpus = _read_text(text_path)
    location, local_only = _model_location(model)
    config = _load(lambda: transformers.AutoConfig.from_pretrained(
        location, local_files_only=local_only), model, "--model")
    if not any(getattr(config, key, None) for key in _EXPERT_KEYS):
        raise WorkloadError(f"no router found in {model}: its config ({config.model_type}) "
                            "has no experts; supported model types: "
                            f"{', '.join(SUPPORTED_FAMILIES)}", "--model")
    rule = routing_rule(config)  # unsupported MoE families stop here, before any weights load
    max_length = tokens_per_iteration if max_length is None else max_length
    _check_positive(max_length, "--max-length")
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise WorkloadError(f"must be <= the model's max_position_embeddings ({limit}), got "
                            f"{max_length}; pass --max-length", "--max-length")
    if tokens_per_iteration % max_length:
        raise WorkloadError(f"must be a multiple of --max-length ({max_length}), got "
                            f"{tokens_per_iteration}", "--tokens-per-iteration")

    vocab_size = int(getattr(config, "vocab_size", 256) or 256)
    ids, tokenizer_name, bos = _tokenize(transformers, corpus, model, location, local_only,
                                         tokenizer, vocab_size)
    body = max_length - (1 if bos is not None else 0)
    per_iteration = tokens_per_iteration // max_length
    available = len(ids) // body // per_iteration if body > 0 else 0
    wanted = available if iterations is None else iterations
    if available < 1 or wanted > available:
        need = max(wanted, 1) * per_iteration * body
        raise WorkloadError(f"{text_path} gives {len(ids)} tokens ({tokenizer_name}) but "
                            f"{need} are needed for {max(wanted, 1)} iteration(s) of "
                            f"{tokens_per_iteration} tokens", "--text")
    sequences = ids[:wanted * per_iteration * body].reshape(-1, body)
    if bos is not None:
        sequences = np.concatenate([np.full((len(sequences), 1), bos), sequences], axis=1)

    # the text is checked before the (possibly huge) model is loaded
    torch_dtype = _torch_dtype(torch, dtype, device)
    dtype_key = "dtype" if _version_at_least(transformers.__version__, (4, 56)) else "torch_dtype"
    loaded = _load(lambda: transformers.AutoModel.from_pretrained(
        location, local_files_only=local_only, **{dtype_key: torch_dtype}), model, "--model")
    loaded.eval()
    try:
        loaded.to(device)
    except (RuntimeError, AssertionError, ValueError) as error:
        raise WorkloadError(f"cannot use device {device!r}: {error}", "--device") from None
    if not find_routers(loaded):
        raise WorkloadError(f"no router found in {model}: it has no MoE layer (a module with "
                            "`experts` beside a `gate` or `router`); supported model types: "
                            f"{', '.join(SUPPORTED_FAMILIES)}", "--model")

    start = getattr(getattr(loaded, "generation_config", None), "decoder_start_token_id", None)
    start = start if isinstance(start, int) else (getattr(config, "pad_token_id", None) or 0)
    routed = route_sequences(loaded, sequences, rule, batch_size=batch_size,
                             features_layer=features_layer if features else None,
                             features_dtype=features_dtype, device=device,
                             decoder_start_token_id=start)

    n_layers, top_k = routed["experts"].shape[1], routed["experts"].shape[3]
    shape = (wanted, tokens_per_iteration)

    def per_iteration_tokens(array):  # [n_seq, layers, L, k] -> [iterations, layers, T, k]
        array = array.reshape(wanted, per_iteration, n_layers, max_length, top_k)
        return array.transpose(0, 2, 1, 3, 4).reshape(wanted, n_layers, tokens_per_iteration,
                                                       top_k)

    names = routed["routers"]
    meta = {
        "model": _model_name(model), "model_type": config.model_type, "source": "recorded",
        "dataset": text_path.name, "num_experts": routed["num_experts"],
        "top_k": int(top_k), "tokens_per_iteration": tokens_per_iteration,
        "max_length": max_length, "batch_size": batch_size, "tokenizer": tokenizer_name,
        "bos_per_sequence": bos is not None, "text_tokens": int(len(ids)),
        "tokens_used": int(wanted * per_iteration * body), "routing": rule.describe(),
        "routers": names, "moe_layer_indices": block_indices(names, config),
        "config": _config_summary(config),
        "dtype": str(next(loaded.parameters()).dtype).replace("torch.", ""), "device": device,
        "transformers": transformers.__version__, "torch": torch.__version__,
    }
    stored_features = None
    if features:
        stored_features = routed["features"].reshape(wanted, tokens_per_iteration, -1)
        meta["features"] = {"what": f"hidden state entering router {names[features_layer]}",
                            "moe_layer": features_layer, "dtype": features_dtype}
    return RoutingTrace(
        experts=per_iteration_tokens(routed["experts"]),
        token_ids=sequences.reshape(shape).astype(np.int32),
        features=stored_features,
        weights=per_iteration_tokens(routed["weights"]).astype(np.float32) if weights else None,
        meta=meta,
    )


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars (for the CLI), then restore them."""
    try:
        from transformers.utils import logging
    except ImportError:
        yield
        return
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _import_backends():
    try:
        import torch
        import transformers
    except ImportError as error:
        raise WorkloadError(f"recording needs torch and transformers ({error}); install them "
                            "with pip install -e \".[record]\" in the moesim checkout (the extra "
                            "includes torch)", "--model") from None
    return torch, transformers


def _check_positive(value, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkloadError(f"must be an integer >= 1, got {value!r}", field)


def _read_text(path: Path) -> str:
    check_regular_file(path, "--text", text_limit_bytes(), error=WorkloadError)
    corpus = path.read_text(encoding="utf-8", errors="replace")
    if not corpus.strip():
        raise WorkloadError(f"{path} is empty: there is no text to route", "--text")
    return corpus


def _model_location(model: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only): local paths never download."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise WorkloadError(f"{model} is a file; pass the model directory (with config.json)",
                                "--model")
        return str(path), True
    if _HUB_NAME.match(model):
        return model, False
    raise WorkloadError(f"{model}: no such model directory (and not a hub name org/name)",
                        "--model")


def _load(load, model: str, field: str):
    try:
        return load()
    except WorkloadError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkloadError(f"cannot load {model}: {first}", field) from None


def _tokenize(transformers, corpus: str, model: str, location: str, local_only: bool,
              tokenizer: str | None, vocab_size: int) -> tuple[np.ndarray, str, int | None]:
    """(token ids, tokenizer description, BOS id or None) for the whole text."""
    if tokenizer == "bytes" or (tokenizer is None and local_only
                                and not any((Path(location) / f).exists()
                                            for f in _TOKENIZER_FILES)):
        return byte_tokens(corpus, vocab_size), "bytes (UTF-8 byte values)", None
    source, source_local = (location, local_only) if tokenizer is None else _model_location(
        tokenizer)
    field = "--model" if tokenizer is None else "--tokenizer"
    loaded = _load(lambda: transformers.AutoTokenizer.from_pretrained(
        source, local_files_only=source_local), tokenizer or model, field)
    ids = np.asarray(loaded(corpus, add_special_tokens=False)["input_ids"], dtype=np.int64)
    if ids.size and int(ids.max()) >= vocab_size:
        raise WorkloadError(f"tokenizer {tokenizer or model} gives id {int(ids.max())} but the "
                            f"model's vocabulary has {vocab_size}", field)
    bos = getattr(loaded, "bos_token_id", None)
    return ids, _model_name(tokenizer or model), bos if isinstance(bos, int) else None


def _torch_dtype(torch, dtype: str, device: str):
    if dtype == "auto":
        return torch.float32 if device == "cpu" else "auto"
    return getattr(torch, dtype)


def _version_at_least(version: str, wanted: tuple[int, int]) -> bool:
    numbers = [int(part) for part in re.findall(r"\d+", version)[:2]]
    return tuple(numbers) >= wanted


def _model_name(model: str) -> str:
    path = Path(model)
    return path.resolve().name if path.exists() else model


def _config_summary(config) -> dict:
    keys = ("model_type", "hidden_size", "d_model", "num_hidden_layers", "num_layers",
            "num_decoder_layers", "num_local_experts", "num_experts", "n_routed_experts",
            "num_experts_per_tok", "norm_topk_prob", "n_group", "topk_group", "topk_method",
            "routed_scaling_factor", "first_k_dense_replace", "decoder_sparse_step",
            "encoder_sparse_step", "mlp_only_layers", "expert_capacity", "vocab_size")
    summary = {}
    for key in keys:
        value = getattr(config, key, None)
        if value is not None and isinstance(value, bool | int | float | str | list):
            summary[key] = value
    return summary
