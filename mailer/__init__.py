"""Rapport delivery engine: compose, personalize, sign and send mail. Knows nothing of Flask or the ORM."""
