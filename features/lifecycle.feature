Feature: A cluster's whole life: plan, update, delete, and several at once

  Scenario: Plan shows a change and writes nothing; only the plan reviewed is applied, and only that change
    Given an empty fleet
    And a spec for "life" with 2 replicas in pool "default"
    And I planned "life", ran new-cluster with that plan's hash and approved it
    When the spec for "life" asks for 5 replicas in pool "default"
    And I plan "life" with that spec
    Then the plan exits with the changes code
    And the plan shows pool "default" going from 2 to 5 replicas and no network change
    And nothing was written by the plan
    When I run new-cluster "life" with that spec, expecting the first plan's hash
    Then the run refuses as the plan differs, having applied and committed nothing
    When I run new-cluster "life" with that spec, expecting the last plan's hash
    Then the run succeeds
    And the new commit on "cluster/life" changes only "clusters/life/workers.yaml"
    And branch "cluster/life" holds a commit signed by a trusted key

  Scenario: Delete a cluster
    Given an empty fleet
    And a spec for "gone" with 1 replicas in pool "default"
    And I ran new-cluster "gone" with that spec and approved it
    When I run delete-cluster "gone"
    Then the run succeeds
    And the VPC of "gone" still exists
    When I approve "gone"
    And I run delete-cluster "gone"
    Then the run succeeds
    And the VPC of "gone" no longer exists and its state is gone
    And main holds a commit signed by a trusted key
    When I run delete-cluster "gone"
    Then the run succeeds
    And it says the cluster is already gone

  Scenario: Three clusters at once all land
    Given an empty fleet
    When I run new-cluster for 3 clusters at the same time
    Then every run succeeds
    And each branch holds a commit signed by a trusted key
    When I approve them all at the same time
    Then every run succeeds
    And main holds every cluster with non-overlapping CIDRs
    And main holds a commit signed by a trusted key
    And the list shows every cluster signed by a trusted key
