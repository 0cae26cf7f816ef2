// dump_reference.cpp: runs nupipe's forward and backward on one micro-batch of a config and
// writes the loss, the batch, every parameter and every gradient to HDF5 for check_reference.py.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "checkpoint/h5_tensors.h"
#include "launcher/config.h"
#include "launcher/dataset.h"
#include "runtime/backend.h"
#include "runtime/error.h"
#include "runtime/stage_model.h"

using namespace nupipe;

int main(int argc, char** argv) {
  CLI::App app{"dump nupipe's loss and gradients for one batch (PyTorch reference test)"};
  std::string config_path, out;
  std::vector<std::string> overrides;
  app.add_option("--config", config_path)->required();
  app.add_option("--out", out)->required();
  app.add_option("--set", overrides);
  CLI11_PARSE(app, argc, argv);
  try {
    const launcher::Config cfg = launcher::load_config(config_path, overrides);
    const runtime::ModelConfig mc = launcher::model_that_runs(cfg);  // loss_chunk, attention
    launcher::Dataset data = launcher::load_dataset(cfg);
    runtime::BatchSampler sampler(data.train->data(), data.train->size(), mc.seq_len,
                                  cfg.train.seed, data.train->name());
    const int B = cfg.train.micro_batch;
    const int64_t N = static_cast<int64_t>(B) * mc.seq_len;
    std::vector<int32_t> tokens(N), targets(N);
    sampler.fill(0, 0, B, tokens.data(), targets.data());

    auto backend = runtime::make_backend(cfg.runtime.device);
    runtime::StageModel model(*backend, mc, runtime::StageSlice::whole(mc));
    model.params().initialize(cfg.train.seed);
    runtime::Tensor tok = runtime::Tensor::empty(*backend, {N}, runtime::DType::i32,
                                                 runtime::MemTag::workspace);
    runtime::Tensor tgt = runtime::Tensor::empty(*backend, {N}, runtime::DType::i32,
                                                 runtime::MemTag::workspace);
    runtime::from_host(tok, tokens);
    runtime::from_host(tgt, targets);
    model.params().zero_grads();
    const double loss = model.forward_backward(tok, tgt, B, 1.0f / N) / N;

    checkpoint::H5TensorWriter w(out);
    w.attr("n_layer", mc.n_layer);
    w.attr("d_model", mc.d_model);
    w.attr("n_head", mc.n_head);
    w.attr("vocab_size", mc.vocab_size);
    w.attr("seq_len", mc.seq_len);
    w.attr("tie_embeddings", mc.tie_embeddings ? 1 : 0);
    w.attr("ln_eps", static_cast<double>(mc.ln_eps));
    w.attr("family", mc.family);
    if (mc.llama()) {  // torch_llama.py's attributes
      w.attr("n_kv_head", mc.kv_heads());
      w.attr("ffn_hidden", mc.ffn_width());
      w.attr("rope_theta", static_cast<double>(mc.rope_theta));
      w.attr("norm_eps", static_cast<double>(mc.norm_eps));
      w.attr("lfa", mc.lfa ? 1 : 0);  // torch_yuan.py's model
    }
    w.attr("loss", loss);
    w.write("batch/tokens", tokens.data(), {B, mc.seq_len});
    w.write("batch/targets", targets.data(), {B, mc.seq_len});
    for (const runtime::TensorSpec& s : model.params().specs()) {
      w.write("model/" + s.name, runtime::to_host(model.params().param(s.name)).data(), s.shape);
      w.write("grad/" + s.name, runtime::to_host(model.params().grad(s.name)).data(), s.shape);
    }
    w.close();
    std::printf("wrote %s: loss %.6f, %zu tensors\n", out.c_str(), loss,
                model.params().specs().size());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\nHINT: %s\n", e.what(), e.hint().c_str());
    return static_cast<int>(e.code());
  }
  return 0;
}
