locals {
  local_endpoint = var.aws_endpoint != null
}

provider "aws" {
  region = var.region

  # Bounded: the provider's default (25, with exponential backoff) keeps a dead or throttling
  # endpoint busy for many minutes; a few tries, then Terraform's error, and the next run continues.
  max_retries = var.aws_max_retries

  # A local endpoint has no real account, metadata service or region list to check against.
  skip_credentials_validation = local.local_endpoint
  skip_requesting_account_id  = local.local_endpoint
  skip_metadata_api_check     = local.local_endpoint
  skip_region_validation      = local.local_endpoint
  s3_use_path_style           = local.local_endpoint

  endpoints {
    ec2  = var.aws_endpoint
    iam  = var.aws_endpoint
    kms  = var.aws_endpoint
    logs = var.aws_endpoint
    s3   = var.aws_endpoint
    sts  = var.aws_endpoint
  }

  default_tags {
    tags = merge(var.tags, { "fleet-pipeline/cluster" = var.cluster_name })
  }
}

module "network" {
  source = "../../modules/network"

  cluster_name = var.cluster_name
  vpc_cidr     = var.vpc_cidr
  zones        = var.zones
  nat_gateways = var.nat_gateways
  endpoints    = var.endpoints

  flow_log_retention_days = var.flow_log_retention_days
  logs_kms_key_arn        = aws_kms_key.logs.arn
}

module "bastion" {
  source = "../../modules/bastion"

  enabled       = var.bastion_enabled
  cluster_name  = var.cluster_name
  vpc_id        = module.network.vpc_id
  subnet_id     = module.network.public_subnet_ids[0]
  allowed_cidrs = var.bastion_allowed_cidrs
  instance_type = var.bastion_instance_type
  key_name      = var.ssh_key_name
  mode          = var.bastion_mode
}
