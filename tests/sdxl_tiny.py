"""A random-weight SDXL pipeline built from configs, for tests (tiny configs) and bench/gpu.py (the
full SDXL base configs). Nothing is downloaded: the tokenizers come from a byte-level vocab.json and
merges.txt written here, and every weight is random.

`save_single_file` writes the pipeline as one .safetensors in the original (SGM) key layout that
Animagine XL 4.0, Illustrious-XL and NoobAI-XL are shipped in, so the backend's from_single_file
path runs diffusers' real checkpoint conversion, not a shortcut.
"""

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

# SDXL's shape (three UNet levels with text_time conditioning and cross-attention on the lowest,
# a 4-level VAE so latents are 1/8 of the image) with channel counts small enough for a CPU.
# Attention only on the lowest level and one resnet per level: self-attention over the 52x80
# tokens of a portrait's middle level cost seconds per step on two cores.
TINY_UNET = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "block_out_channels": [8, 16, 16],
    "layers_per_block": 1,
    "transformer_layers_per_block": [1, 1, 1],
    "attention_head_dim": [1, 1, 1],  # diffusers' name for the number of heads
    "norm_num_groups": 4,
    "cross_attention_dim": 80,  # text_encoder hidden 32 + text_encoder_2 hidden 48
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 96,  # 6 time ids x 8 + the pooled text embedding (48)
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [4, 4, 8, 8],
    "layers_per_block": 0,  # the decoder still has one resnet per level; full-resolution convolutions are the cost
    "norm_num_groups": 4,
    "latent_channels": 4,
    "sample_size": 128,
    "scaling_factor": 0.13025,
    # Self-attention over 104x160 latents would dominate a tiny model's run time.
    "mid_block_add_attention": False,
}
TINY_TEXT_ENCODER = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
}
# Wider than the first, as in SDXL: diffusers tells the two encoders in a checkpoint apart by width.
TINY_TEXT_ENCODER_2 = {**TINY_TEXT_ENCODER, "hidden_size": 48, "projection_dim": 48, "hidden_act": "gelu"}

# Euler a over SDXL's training noise schedule (the scheduler config Animagine XL 4.0 ships).
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte-to-character table: every byte gets a printable character, so BPE never sees
    whitespace or control bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def write_tokenizer_files(folder: Path) -> Path:
    """A byte-level CLIP vocabulary (every character a token, a few merges): English prompts turn
    into about one token per character, so a long prompt really runs past 77 tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    merges = [("g", "i"), ("gi", "r"), ("gir", "l</w>"), ("h", "a"), ("ha", "i"), ("hai", "r</w>")]
    tokens = [*chars, *(c + "</w>" for c in chars), *("".join(m) for m in merges), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return folder


def build_pipeline(*, unet: dict, vae: dict, text_encoder: dict, text_encoder_2: dict, workdir: Path,
                   seed: int = 0, device: str = "cpu") -> StableDiffusionXLPipeline:
    """An SDXL pipeline with random weights (fixed by `seed`) and SDXL's two tokenizers: the first
    pads with <|endoftext|>, the second with "!" as OpenCLIP's does. The networks are created on
    `device` (3.5 billion random weights initialise in seconds on a GPU, in minutes on a CPU;
    "meta" allocates none); the scheduler stays outside, since it builds its tables with numpy."""
    files = write_tokenizer_files(Path(workdir) / "vocab")
    tokenizer = CLIPTokenizer.from_pretrained(files, model_max_length=77)
    tokenizer_2 = CLIPTokenizer.from_pretrained(files, model_max_length=77, pad_token="!")
    special = {"vocab_size": max(49408, len(tokenizer)), "bos_token_id": tokenizer.bos_token_id,
               "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(seed)
    with torch.device(device):
        networks = {
            "vae": AutoencoderKL(**vae),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**{**special, **text_encoder})),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**{**special, **text_encoder_2})),
            "unet": UNet2DConditionModel(**unet),
        }
    return StableDiffusionXLPipeline(**networks, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
                                     scheduler=EulerAncestralDiscreteScheduler(**SCHEDULER))


def build_tiny_pipeline(workdir: Path, *, seed: int = 0) -> StableDiffusionXLPipeline:
    return build_pipeline(unet=TINY_UNET, vae=TINY_VAE, text_encoder=TINY_TEXT_ENCODER,
                          text_encoder_2=TINY_TEXT_ENCODER_2, workdir=workdir, seed=seed)


def save_single_file(pipe: StableDiffusionXLPipeline, path: Path) -> Path:
    """The whole pipeline's weights as one .safetensors in the SGM layout of released SDXL
    checkpoints (model.diffusion_model., first_stage_model., conditioner.embedders.0/1.)."""
    state = {}
    state.update({f"model.diffusion_model.{k}": v for k, v in _unet_to_sgm(pipe.unet).items()})
    state.update({f"first_stage_model.{k}": v for k, v in _vae_to_ldm(pipe.vae).items()})
    state.update({f"conditioner.embedders.0.transformer.{k}": v for k, v in _clip_to_ldm(pipe.text_encoder).items()})
    state.update({f"conditioner.embedders.1.model.{k}": v for k, v in _clip_to_open_clip(pipe.text_encoder_2).items()})
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return Path(path)


def _renamed(state: dict, renames: list[tuple[str, str]]) -> dict:
    """Apply (diffusers, original) substring renames, in order, to every key."""
    out = {}
    for key, value in state.items():
        for diffusers_part, original_part in renames:
            key = key.replace(diffusers_part, original_part)
        out[key] = value
    return out


def _unet_to_sgm(unet: UNet2DConditionModel) -> dict:
    config = unet.config
    levels, layers = len(config.block_out_channels), config.layers_per_block
    renames = [
        ("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
        ("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2."),
        ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
        ("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    for i in range(levels):
        for j in range(layers):
            renames.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{(layers + 1) * i + j + 1}.0."))
            renames.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{(layers + 1) * i + j + 1}.1."))
        if i < levels - 1:
            renames.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(layers + 1) * (i + 1)}.0.op."))
        for j in range(layers + 1):
            renames.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(layers + 1) * i + j}.0."))
            renames.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(layers + 1) * i + j}.1."))
        if i < levels - 1:
            slot = 2 if "CrossAttn" in config.up_block_types[i] else 1
            renames.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{(layers + 1) * i + layers}.{slot}."))
    resnet_parts = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
                    ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."),
                    ("conv_shortcut.", "skip_connection.")]
    state = {}
    for key, value in unet.state_dict().items():
        if ".resnets." in key:
            for diffusers_part, original_part in resnet_parts:
                key = key.replace(f".{diffusers_part}", f".{original_part}")
        state[key] = value
    return _renamed(state, renames)


def _vae_to_ldm(vae: AutoencoderKL) -> dict:
    levels = len(vae.config.block_out_channels)
    renames = [("conv_shortcut.", "nin_shortcut."), ("conv_norm_out.", "norm_out."),
               ("mid_block.resnets.0.", "mid.block_1."), ("mid_block.resnets.1.", "mid.block_2."),
               ("mid_block.attentions.0.", "mid.attn_1.")]
    for i in range(levels):
        renames.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."))
        renames.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        renames.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{levels - 1 - i}.block."))
        renames.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample."))
    out = {}
    for key, value in _renamed(vae.state_dict(), renames).items():
        if ".mid.attn_1." in key:
            for diffusers_part, original_part in (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."),
                                                  ("to_v.", "v."), ("to_out.0.", "proj_out.")):
                key = key.replace(f"attn_1.{diffusers_part}", f"attn_1.{original_part}")
            if key.endswith("weight") and value.ndim == 2:
                value = value[:, :, None, None]  # the original VAE attention is 1x1 convolutions
        out[key] = value
    return out


def _clip_to_ldm(text_encoder: CLIPTextModel) -> dict:
    """Released checkpoints keep the HF CLIP names under `text_model.`; newer transformers
    releases dropped that level from CLIPTextModel's own state dict."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in text_encoder.state_dict().items()}


def _clip_to_open_clip(text_encoder: CLIPTextModelWithProjection) -> dict:
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {
        "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": state.pop("final_layer_norm.weight"),
        "ln_final.bias": state.pop("final_layer_norm.bias"),
        "text_projection": state.pop("text_projection.weight").T,
    }
    state.pop("embeddings.position_ids", None)
    for layer in range(text_encoder.config.num_hidden_layers):
        src, dst = f"encoder.layers.{layer}.", f"transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            # OpenCLIP's nn.MultiheadAttention keeps q, k and v in one stacked projection.
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([state.pop(f"{src}self_attn.{p}_proj.{kind}") for p in "qkv"])
            out[f"{dst}attn.out_proj.{kind}"] = state.pop(f"{src}self_attn.out_proj.{kind}")
            out[f"{dst}ln_1.{kind}"] = state.pop(f"{src}layer_norm1.{kind}")
            out[f"{dst}ln_2.{kind}"] = state.pop(f"{src}layer_norm2.{kind}")
            out[f"{dst}mlp.c_fc.{kind}"] = state.pop(f"{src}mlp.fc1.{kind}")
            out[f"{dst}mlp.c_proj.{kind}"] = state.pop(f"{src}mlp.fc2.{kind}")
    assert not state, f"unconverted text_encoder_2 weights: {sorted(state)}"
    return out
