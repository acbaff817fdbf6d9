"""The `local` provider: instances are processes on this machine (CPU inference with llama.cpp)."""
