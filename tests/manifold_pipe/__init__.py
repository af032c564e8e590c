"""The manifold: the Open WebUI pipe, its host and the fake OpenAI API."""
