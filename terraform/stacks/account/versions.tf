terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }

  # Bucket, key, region and locking are given at init: one state object per account, beside the clusters' own.
  backend "s3" {}
}
