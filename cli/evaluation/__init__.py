"""`python main.py eval`: simulated leads talk to the real agent; a rubric grades each talk.

A company adapts the bot by editing prompts/; the scenario suite scripts the model's
answers, so it cannot say whether an edit made the bot sell better or worse. This
package plays persona files (tests/eval/personas/) against the real agent graph with a
model playing the lead, grades each conversation by code where code can and by a model
judge where it cannot, and writes a report that can be diffed and used as a deploy gate.

One module per job: personas (files), lead (the simulated lead), runner (the turn loop),
transcript (what a conversation leaves, and its cost), checks (the code half of the
rubric), judge (the model half), report (pass rates, baseline diff, thresholds),
markdown (the readable report), command (the composition), options (the command line).
"""
