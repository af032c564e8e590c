"""The bot platform: its services, their real processes on the real Redis, and the demo."""
