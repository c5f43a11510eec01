"""Automations: triggers, runs and their figures."""
