"""inference subpackage of vision_tl."""
