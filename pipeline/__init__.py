"""Terraform-to-GitOps cluster bootstrap pipeline."""
