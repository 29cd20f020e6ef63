"""Incidents in a closed loop: categories and their rules, a pure state machine with deadlines,
durable storage, intake from every source, assignment to officers, reports."""
