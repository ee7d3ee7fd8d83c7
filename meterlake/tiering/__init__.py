"""Hot/warm/cold tiering: raw events move from bronze to a compressed cold Delta table
with verification and a log, rollups are down-sampled with age, and one read sees every
tier (`meterlake.tiering.events`)."""
