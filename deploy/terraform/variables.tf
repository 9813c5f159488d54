variable "environment" {
  description = "Environment name, part of every resource name (e.g. prod)."
  type        = string
  default     = "prod"
}

variable "region" {
  description = "AWS region of the cluster (Binance's archive is in ap-northeast-1; transfer cost and latency favour a nearby region)."
  type        = string
  default     = "us-west-2"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (1.29 or newer: native sidecar containers)."
  type        = string
  default     = "1.31"

  validation {
    condition     = tonumber(split(".", var.kubernetes_version)[1]) >= 29
    error_message = "The manifests are need Kubernetes 1.29 or newer (native sidecar containers for meshed Jobs)."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the cluster VPC."
  type        = string
  default     = "10.0.0.0/16"
}

variable "storage_instance_type" {
  description = "Instance type of the 4 MinIO nodes. i3.xlarge has one 950 GB NVMe (4 x 200 GiB drives per node); see deploy/README.md for larger choices."
  type        = string
  default     = "i3.xlarge"
}

variable "backup_bucket" {
  description = "S3 bucket for CloudNativePG WAL archives and base backups."
  type        = string
  default     = "crypto-lakehouse-prod-backups"
}
