"""Job functions and the runners that execute them (in-process, and arq in production)."""
