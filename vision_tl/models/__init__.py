"""models subpackage of vision_tl."""
