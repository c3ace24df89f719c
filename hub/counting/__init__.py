"""How the doors' events become occupancy: the counting rules every store follows
(``rules``). Nothing here reads or writes a database."""
