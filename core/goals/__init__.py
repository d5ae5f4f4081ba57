"""Sales goals: the goals themselves and their targets (targets.py), and planning what to
push to each CRM (push.py)."""
