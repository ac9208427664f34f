"""Schema migrations, made by Tortoise ORM's migration tool; never edited once landed."""
