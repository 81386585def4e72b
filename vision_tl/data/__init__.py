"""data subpackage of vision_tl."""
