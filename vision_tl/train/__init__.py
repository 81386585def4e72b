"""train subpackage of vision_tl."""
