"""The bot runner: `python -m bot.runner --warm` (HTTP, in the standby pool) or `--job` (one cold bot).

`session` is a bot's life (fencing, keepalive, admin and leave, cleanup), `app` the warm runner's
HTTP face, `cold` the cold job; `__main__` picks one.
"""
