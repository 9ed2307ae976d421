-- The audit log uses the database the image creates (acgs); the evolution service gets its own.
CREATE DATABASE acgs_evolution OWNER acgs;
