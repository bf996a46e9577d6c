"""GGUF files in and out: the format llama.cpp, Ollama and LM Studio keep models in.

- `read`: a .gguf file becomes a normal safetensors model folder (dequantized once, cached), so
  every stage loads it like any other local model.
- `write`: a trained Llama-family model (or a LoRA run, merged) becomes a .gguf file plus an
  Ollama Modelfile.
"""
