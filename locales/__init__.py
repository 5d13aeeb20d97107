"""Translations, one YAML file per language."""
