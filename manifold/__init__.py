"""The Open WebUI pipe (`openai_responses_manifold.py`, a single file Open WebUI loads) and its local host."""
