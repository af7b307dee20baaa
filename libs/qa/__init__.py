"""Quality assurance: decides when a draft must go to a radiologist before anyone reads it."""
