"""build_app: planning, phases and their commits, the .tasks store, the report, events."""
