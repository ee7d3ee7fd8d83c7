"""Rollups: bronze events per meter into silver time windows and gold billing periods."""
