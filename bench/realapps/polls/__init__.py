"""The Django tutorial's polls application: questions and their choices."""
