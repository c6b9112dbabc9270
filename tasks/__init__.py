"""The agent task and the code it needs: model layer, tools, workspace, git, store, report."""
