"""Pipeline slices and the whole main job, end to end."""
