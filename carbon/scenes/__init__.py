"""Scenes: places and events where guests scan a code to go carbon neutral."""
