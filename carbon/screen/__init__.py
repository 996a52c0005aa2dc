"""The venue big screen (``/screen/<scene>``): a scene's progress live on a projector."""
