# The cluster's keys and audit log: Secrets encrypted at rest by a key only the control plane may use,
# and logs encrypted by a key only CloudWatch Logs may use, in this region, for this cluster's groups.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  # Named, not looked up: a plan of an account's first cluster runs before the account stack made the role.
  control_plane_role = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/${var.control_plane_role_name}"
  log_groups         = "arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/fleet-pipeline/${var.cluster_name}/*"
  # The account administers its keys (the only way to mend a key policy) but uses neither.
  key_administration = {
    Sid       = "AccountAdministersTheKey"
    Effect    = "Allow"
    Principal = { AWS = local.account_root }
    Action = [
      "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*",
      "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
      "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand",
    ]
    Resource = "*"
  }
}

resource "aws_kms_key" "secrets" {
  description             = "Kubernetes Secrets of cluster ${var.cluster_name}, through the aws-encryption-provider"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.key_administration,
      {
        Sid       = "OnlyTheControlPlaneUsesIt"
        Effect    = "Allow"
        Principal = { AWS = local.control_plane_role }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "secrets" {
  name          = "alias/fleet-pipeline/${var.cluster_name}/secrets"
  target_key_id = aws_kms_key.secrets.key_id
}

resource "aws_kms_key" "logs" {
  description             = "CloudWatch Logs of cluster ${var.cluster_name}: VPC flow logs and the API server's audit log"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.key_administration,
      {
        Sid       = "CloudWatchLogsOfThisCluster"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = { ArnLike = { "kms:EncryptionContext:aws:logs:arn" = local.log_groups } }
      },
    ]
  })
}

resource "aws_cloudwatch_log_group" "audit" {
  name              = "/fleet-pipeline/${var.cluster_name}/kube-apiserver-audit"
  retention_in_days = var.audit_log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

# The account's control-plane role is shared by the account's clusters; each cluster's stack adds only
# what its own control plane needs of its own resources.
resource "aws_iam_role_policy" "control_plane" {
  name = "fleet-pipeline-${var.cluster_name}"
  role = var.control_plane_role_name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ShipTheAuditLog"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = ["${aws_cloudwatch_log_group.audit.arn}:*"]
      },
      {
        Sid      = "EncryptSecrets"
        Effect   = "Allow"
        Action   = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
        Resource = [aws_kms_key.secrets.arn]
      },
    ]
  })
}
