"""export_hf_llama.py: the llama family's half of scripts/export_hf.py: nupipe's llama tensor
names and shapes, the Hugging Face LlamaForCausalLM state_dict they map to, and its
LlamaConfig-style JSON. Imported by export_hf.py, which reads and verifies the checkpoint.

The mapping (C = d_model, D = C / n_head, H = n_head, K = n_kv_head, F = ffn_hidden; nn.Linear
[out, in] on both sides, so nothing is transposed):

    embed.wte.weight            [V, C]            -> model.embed_tokens.weight
    blocks.i.norm1.weight       [C]               -> model.layers.i.input_layernorm.weight
    blocks.i.attn.qkv.weight    [(H + 2K) D, C]   -> rows [0, HD)        self_attn.q_proj.weight
                                                     rows [HD, HD + KD)  self_attn.k_proj.weight
                                                     rows [HD + KD, ..)  self_attn.v_proj.weight
    blocks.i.attn.proj.weight   [C, C]            -> model.layers.i.self_attn.o_proj.weight
    blocks.i.norm2.weight       [C]               -> model.layers.i.post_attention_layernorm.weight
    blocks.i.mlp.gate_up.weight [2F, C]           -> rows [0, F) mlp.gate_proj, [F, 2F) mlp.up_proj
    blocks.i.mlp.down.weight    [C, F]            -> model.layers.i.mlp.down_proj.weight
    head.norm.weight            [C]               -> model.norm.weight
    head.lm.weight (untied)     [V, C]            -> lm_head.weight (tied: embed_tokens' tensor)

With model.lfa (Yuan 2.0's localized filtering) the export is a YuanForCausalLM state_dict under
Yuan's own names (IEIT-Yuan's Hugging Face modeling file), which differs from the above in:

    blocks.i.attn.qkv.weight rows [0, 2C)      -> self_attn.q_proj.weight, self_attn.k_proj.weight
        interleaved: Yuan cuts cat(q_proj(f), k_proj(f)) into H slices of 2D, query head h the
        first D of slice h and key head h the second, so the rows of vstack(q_proj, k_proj) are
        q head 0, k head 0, q head 1, ... (nupipe's: all q heads, then all k heads)
    blocks.i.attn.qkv.weight rows [2C, 3C)     -> self_attn.v_proj.weight (from the unfiltered h)
    blocks.i.attn.lfa.conv{1,2}.weight [2, out, in] -> self_attn.lf_gate.conv{1,2}.weight
        [out, in, 2, 1] (Conv2d over [B, C, T, 1] with padding (1, 0); tap 0 is position t - 1)
    blocks.i.attn.lfa.conv{1,2}.bias           -> self_attn.lf_gate.conv{1,2}.bias
    blocks.i.attn.lfa.norm.weight              -> self_attn.lf_gate.output_layernorm.weight
    blocks.i.mlp.gate_up.weight rows [0, F)    -> mlp.up_proj.weight   (Yuan: down(gate * silu(up)),
                                 rows [F, 2F)  -> mlp.gate_proj.weight  so silu's input is up_proj)

Yuan's rotary embedding has base 10000 in its code (config.json cannot change it): a checkpoint
with another rope_theta is refused.

No q/k permutation for Llama: nupipe's rotary embedding uses Hugging Face's own layout (each head's
dimension d pairs with d + D/2, rotate_half), so q_proj and k_proj rows go over as they are. (The
permutation in HF's conversion script turns Meta's interleaved pairs (2d, 2d+1) into that
layout; nupipe never had them.) Rotary angles: nupipe computes pos * theta^(-2d/D) in double,
HF in float32; the difference is below float32 rounding at the positions of a small seq_len.
"""

from collections import OrderedDict

YUAN_ROPE_THETA = 10000.0


def nupipe_shapes(hp):
    """nupipe's llama parameter names and shapes (tests/reference/torch_llama.py, param_shapes)."""
    C, V, F = hp["d_model"], hp["vocab_size"], hp["ffn_hidden"]
    D = C // hp["n_head"]
    Q = (hp["n_head"] + 2 * hp["n_kv_head"]) * D
    s = OrderedDict([("embed.wte.weight", (V, C))])
    for i in range(hp["n_layer"]):
        p = f"blocks.{i}."
        for name, shape in (("norm1.weight", (C,)), ("attn.qkv.weight", (Q, C)),
                            ("attn.proj.weight", (C, C)), ("norm2.weight", (C,)),
                            ("mlp.gate_up.weight", (2 * F, C)), ("mlp.down.weight", (C, F))):
            s[p + name] = shape
        if hp.get("lfa"):
            for name, shape in (("conv1.weight", (2, C // 2, C)), ("conv1.bias", (C // 2,)),
                                ("conv2.weight", (2, C, C // 2)), ("conv2.bias", (C,)),
                                ("norm.weight", (C,))):
                s[p + "attn.lfa." + name] = shape
    s["head.norm.weight"] = (C,)
    if not hp["tie_embeddings"]:
        s["head.lm.weight"] = (V, C)
    return s


def to_hf(hp, tensors):
    """OrderedDict of HF LlamaForCausalLM keys (its state_dict() order) -> contiguous float32
    torch tensors."""
    import torch

    D = hp["d_model"] // hp["n_head"]
    q, kv, F = hp["n_head"] * D, hp["n_kv_head"] * D, hp["ffn_hidden"]

    def t(name, rows=None):
        x = torch.from_numpy(tensors[name])
        return (x[rows[0]:rows[1]] if rows else x).contiguous()

    if hp.get("lfa"):
        return _to_yuan(hp, tensors, t)
    sd = OrderedDict()
    sd["model.embed_tokens.weight"] = t("embed.wte.weight")
    for i in range(hp["n_layer"]):
        p, h = f"blocks.{i}.", f"model.layers.{i}."
        sd[h + "self_attn.q_proj.weight"] = t(p + "attn.qkv.weight", (0, q))
        sd[h + "self_attn.k_proj.weight"] = t(p + "attn.qkv.weight", (q, q + kv))
        sd[h + "self_attn.v_proj.weight"] = t(p + "attn.qkv.weight", (q + kv, q + 2 * kv))
        sd[h + "self_attn.o_proj.weight"] = t(p + "attn.proj.weight")
        sd[h + "mlp.gate_proj.weight"] = t(p + "mlp.gate_up.weight", (0, F))
        sd[h + "mlp.up_proj.weight"] = t(p + "mlp.gate_up.weight", (F, 2 * F))
        sd[h + "mlp.down_proj.weight"] = t(p + "mlp.down.weight")
        sd[h + "input_layernorm.weight"] = t(p + "norm1.weight")
        sd[h + "post_attention_layernorm.weight"] = t(p + "norm2.weight")
    sd["model.norm.weight"] = t("head.norm.weight")
    sd["lm_head.weight"] = (sd["model.embed_tokens.weight"] if hp["tie_embeddings"]
                            else t("head.lm.weight"))
    return sd


def _to_yuan(hp, tensors, t):
    """YuanForCausalLM's keys (its state_dict() order) -> contiguous float32 torch tensors."""
    C, H, F = hp["d_model"], hp["n_head"], hp["ffn_hidden"]
    sd = OrderedDict()
    sd["model.embed_tokens.weight"] = t("embed.wte.weight")
    for i in range(hp["n_layer"]):
        p, h = f"blocks.{i}.", f"model.layers.{i}."
        qk = t(p + "attn.qkv.weight", (0, 2 * C))
        stacked = qk.reshape(2, H, -1, C).transpose(0, 1).reshape(2 * C, C)  # q0 k0 q1 k1 ...
        sd[h + "self_attn.v_proj.weight"] = t(p + "attn.qkv.weight", (2 * C, 3 * C))
        sd[h + "self_attn.o_proj.weight"] = t(p + "attn.proj.weight")
        for conv in ("conv1", "conv2"):
            w = t(p + f"attn.lfa.{conv}.weight")
            sd[h + f"self_attn.lf_gate.{conv}.weight"] = w.permute(1, 2, 0).unsqueeze(-1).contiguous()
            sd[h + f"self_attn.lf_gate.{conv}.bias"] = t(p + f"attn.lfa.{conv}.bias")
        sd[h + "self_attn.lf_gate.output_layernorm.weight"] = t(p + "attn.lfa.norm.weight")
        sd[h + "self_attn.q_proj.weight"] = stacked[:C].contiguous()
        sd[h + "self_attn.k_proj.weight"] = stacked[C:].contiguous()
        sd[h + "mlp.up_proj.weight"] = t(p + "mlp.gate_up.weight", (0, F))
        sd[h + "mlp.gate_proj.weight"] = t(p + "mlp.gate_up.weight", (F, 2 * F))
        sd[h + "mlp.down_proj.weight"] = t(p + "mlp.down.weight")
        sd[h + "input_layernorm.weight"] = t(p + "norm1.weight")
        sd[h + "post_attention_layernorm.weight"] = t(p + "norm2.weight")
    sd["model.norm.weight"] = t("head.norm.weight")
    sd["lm_head.weight"] = (sd["model.embed_tokens.weight"] if hp["tie_embeddings"]
                            else t("head.lm.weight"))
    return sd


def _yuan_config(hp):
    """YuanConfig fields: multi-head, no num_key_value_heads or rope_theta (its code has none)."""
    return OrderedDict([
        ("model_type", "yuan"),
        ("architectures", ["YuanForCausalLM"]),
        ("vocab_size", hp["vocab_size"]),
        ("hidden_size", hp["d_model"]),
        ("intermediate_size", hp["ffn_hidden"]),
        ("num_hidden_layers", hp["n_layer"]),
        ("num_attention_heads", hp["n_head"]),
        ("hidden_act", "silu"),
        ("max_position_embeddings", hp["seq_len"]),
        ("rms_norm_eps", hp["norm_eps"]),
        ("causal_mask", True),
        ("use_flash_attention", False),
        ("use_loss_mask", False),
        ("reset_position_ids", False),
        ("reset_attention_mask", False),
        ("tie_word_embeddings", hp["tie_embeddings"]),
        ("bos_token_id", None), ("eos_token_id", None),
        ("torch_dtype", "float32"),
    ])


def hf_config(hp):
    """LlamaConfig fields (what config.json holds; YuanConfig's with model.lfa); export_hf.py
    adds the `nupipe` record."""
    if hp.get("lfa"):
        return _yuan_config(hp)
    return OrderedDict([
        ("model_type", "llama"),
        ("architectures", ["LlamaForCausalLM"]),
        ("vocab_size", hp["vocab_size"]),
        ("hidden_size", hp["d_model"]),
        ("intermediate_size", hp["ffn_hidden"]),
        ("num_hidden_layers", hp["n_layer"]),
        ("num_attention_heads", hp["n_head"]),
        ("num_key_value_heads", hp["n_kv_head"]),
        ("head_dim", hp["d_model"] // hp["n_head"]),
        ("hidden_act", "silu"),
        ("max_position_embeddings", hp["seq_len"]),
        ("rms_norm_eps", hp["norm_eps"]),
        ("rope_theta", hp["rope_theta"]),
        ("rope_scaling", None),
        ("attention_bias", False),
        ("mlp_bias", False),
        ("attention_dropout", 0.0),
        ("tie_word_embeddings", hp["tie_embeddings"]),
        ("bos_token_id", None), ("eos_token_id", None),
        ("torch_dtype", "float32"),
    ])
