output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = module.eks.cluster_endpoint
}

output "pg_backup_role_arn" {
  description = "IAM role for CloudNativePG backups: set it in deploy/k8s/overlays/production."
  value       = module.pg_backup_irsa.iam_role_arn
}

output "backup_bucket" {
  description = "S3 bucket for PostgreSQL backups."
  value       = aws_s3_bucket.backups.bucket
}

output "external_secrets_role_arn" {
  description = "IAM role the External Secrets Operator assumes to read crypto-lakehouse/* in Secrets Manager."
  value       = module.external_secrets_irsa.iam_role_arn
}
