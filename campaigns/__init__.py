"""Rapport application: models, services, jobs and web blueprints."""
