"""From landed answers to checked tables: flatten output1/output2, check, write a day."""
