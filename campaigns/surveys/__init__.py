"""Surveys: questions, one-click answers from the mail, results."""
