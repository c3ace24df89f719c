"""The technician's tools: facility registration, node enrolment, posters, fleet."""
