# Issue 12: does PushT's symmetry teach the pixel teacher contact? The state models that plan at ~0.75 read
# contact in the block's own frame, so one pushed block teaches them every pose of it; the pixel teacher has
# to learn each pose from its own examples (the 45-episode state model plans at the pixel teachers' level).
# data.augment=dihedral shows each training window turned or mirrored into one of the square's 8 poses
# (the physics is exactly symmetric: tests/test_symmetry.py). Two teachers of the same recipe, with and
# without it, side by side: scripts/gpu/teacher_pair.sh (its stages, settings and DRY=1 rehearsal) with this
# pair. Run in the fifteenth session (docs/results.md), when the recipe trained at the preset's
# objective.p_mean=-0.8: no gain.
PAIR="plain=data.augment=none dihedral=data.augment=dihedral" STUDY=augment exec bash scripts/gpu/teacher_pair.sh
