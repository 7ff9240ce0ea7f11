"""Seeded synthetic clicks and orders, with labelled faults and fraud: see generator.simulate."""
