"""Typed stack settings (see stacks/settings/)."""

from stacks.settings import PROJECT, Secret, SettingsError, StackSettings, from_pulumi, load_settings

__all__ = ["PROJECT", "Secret", "SettingsError", "StackSettings", "from_pulumi", "load_settings"]
