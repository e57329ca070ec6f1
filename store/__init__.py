"""The store floor: durable state behind one protocol (`base.Store`), over the ground
floor (core) only.

Two backends prove the same contract suite (tests/store): `sqlite`, embedded, the
default with no services at all, and `supabase`, shared by several instances through
PostgREST. `supabase_probe` is the doctor's check of the latter, importable without its
libraries; `timestamps` is the one instant format both write.
"""
