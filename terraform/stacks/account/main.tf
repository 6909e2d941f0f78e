# What every cluster in the account shares: the IAM its machines run as. IAM is global to the
# account, so this stack has one state, applied by whichever run finds it missing or changed.

locals {
  local_endpoint = var.aws_endpoint != null
}

provider "aws" {
  region      = var.region
  max_retries = var.aws_max_retries

  skip_credentials_validation = local.local_endpoint
  skip_requesting_account_id  = local.local_endpoint
  skip_metadata_api_check     = local.local_endpoint
  skip_region_validation      = local.local_endpoint

  endpoints {
    iam = var.aws_endpoint
    sts = var.aws_endpoint
  }

  default_tags {
    tags = merge(var.tags, { "fleet-pipeline/stack" = "account" })
  }
}

module "node_iam" {
  source = "../../modules/node-iam"

  control_plane_name = var.control_plane_name
  nodes_name         = var.nodes_name
}
