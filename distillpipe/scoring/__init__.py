"""Models the filters score with: causal-LM log-likelihoods (llama.cpp, transformers),
reward models, sentence embeddings. Each is loaded lazily, once per process."""
