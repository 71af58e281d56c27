"""One interface for talking to models: Vertex Gemini, local Hugging Face models, and a scripted fake."""
