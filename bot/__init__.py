"""The bot control plane: gateway -> Redis launch queue -> operator -> runner, session ids in every hop."""
